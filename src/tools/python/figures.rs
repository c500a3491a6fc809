//! A cell's figures: the PNGs the cell driver saved as `figure-N.png` in the private io dir,
//! found by listing the dir (never from a path the guest reported), read through
//! `GuestDir::read_file` (direct children, regular files, no symlinks, size-capped) and copied
//! into the output dir under names the host picks, created exclusively so nothing is overwritten.

use super::guest_fs::GuestDir;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Figures kept per cell (a cell can leave any number open).
pub const MAX_FIGURES: usize = 32;
/// Bytes per figure: a large, dense plot at 300 dpi is a few MB.
pub const MAX_FIGURE_BYTES: u64 = 16 << 20;
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// What collecting found: the saved files, and notes for the cell's stderr about what was not
/// saved.
#[derive(Debug, Default)]
pub struct Figures {
    pub saved: Vec<PathBuf>,
    pub notes: String,
}

/// The number in a `figure-N.png` name, written as Python's `f"{n}"` writes it.
fn figure_number(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("figure-")?.strip_suffix(".png")?;
    let n: usize = digits.parse().ok()?;
    (n.to_string() == digits).then_some(n)
}

/// Copies the cell's figures from `private` into `output_dir`, in the order the driver numbered
/// them; `counter` numbers the saved files across the session's cells.
pub fn collect(private: &GuestDir, output_dir: &Path, counter: &mut usize) -> Figures {
    let mut figures = Figures::default();
    let mut found: Vec<(usize, String)> = match private.names() {
        Ok(names) => names
            .into_iter()
            .filter_map(|name| Some((figure_number(&name)?, name)))
            .collect(),
        Err(e) => {
            figures.notes = format!("could not list the cell's figures ({e})\n");
            return figures;
        }
    };
    if found.is_empty() {
        return figures;
    }
    found.sort();
    if found.len() > MAX_FIGURES {
        figures.notes += &format!(
            "{} figures were left open; only the first {MAX_FIGURES} are saved\n",
            found.len()
        );
        found.truncate(MAX_FIGURES);
    }
    if let Err(e) = std::fs::create_dir_all(output_dir) {
        figures.notes += &format!(
            "could not create the figure dir {} ({e})\n",
            output_dir.display()
        );
        return figures;
    }
    for (_, name) in found {
        let bytes = match private.read_file(&name, MAX_FIGURE_BYTES) {
            Ok(Some(bytes)) if bytes.starts_with(PNG_SIGNATURE) => bytes,
            Ok(Some(_)) => {
                figures.notes += &format!("{name} is not a PNG image: not saved\n");
                continue;
            }
            Ok(None) => continue,
            Err(why) => {
                figures.notes += &format!("{why}: not saved\n");
                continue;
            }
        };
        *counter += 1;
        match write_new(output_dir, *counter, &bytes) {
            Ok(path) => figures.saved.push(path),
            Err(e) => {
                figures.notes +=
                    &format!("could not save {name} in {} ({e})\n", output_dir.display())
            }
        }
    }
    figures
}

/// Writes `bytes` to a new file `figure-<pid>-<n>[-k].png` in `dir`: created with `create_new`,
/// so two sessions (or processes) saving at once never share or overwrite a file.
fn write_new(dir: &Path, n: usize, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let stamp = std::process::id();
    let mut k = 0usize;
    loop {
        let name = if k == 0 {
            format!("figure-{stamp}-{n}.png")
        } else {
            format!("figure-{stamp}-{n}-{k}.png")
        };
        let path = dir.join(name);
        match std::fs::File::create_new(&path) {
            Ok(mut file) => {
                if let Err(e) = file.write_all(bytes) {
                    let _ = std::fs::remove_file(&path);
                    return Err(e);
                }
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => k += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{GuestDir, MAX_FIGURES, PNG_SIGNATURE, collect, figure_number};

    fn png(tag: u8) -> Vec<u8> {
        [PNG_SIGNATURE, &[tag; 16]].concat()
    }

    #[test]
    fn only_canonical_figure_names_count() {
        assert_eq!(figure_number("figure-0.png"), Some(0));
        assert_eq!(figure_number("figure-12.png"), Some(12));
        for name in [
            "figure-01.png",
            "figure-.png",
            "figure-+1.png",
            "figure-1.PNG",
            "figure-1.png.png",
            "xfigure-1.png",
            "status.json",
        ] {
            assert_eq!(figure_number(name), None, "{name}");
        }
    }

    #[test]
    fn figures_are_copied_in_order_under_new_names_and_bad_ones_are_noted() {
        let private = GuestDir::create("figures-test-").unwrap();
        let out = tempfile::tempdir().unwrap();
        std::fs::write(private.path().join("figure-10.png"), png(10)).unwrap();
        std::fs::write(private.path().join("figure-2.png"), png(2)).unwrap();
        std::fs::write(private.path().join("figure-3.png"), b"not a png").unwrap();
        std::fs::write(private.path().join("notes.txt"), png(0)).unwrap();
        let mut counter = 0;
        let figures = collect(&private, out.path(), &mut counter);
        let read: Vec<Vec<u8>> = figures
            .saved
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        assert_eq!(read, vec![png(2), png(10)]);
        assert!(
            figures.notes.contains("figure-3.png is not a PNG"),
            "{}",
            figures.notes
        );
        assert!(
            private.path().join("figure-2.png").exists(),
            "copied, not moved"
        );

        // The same names again: new files, the first ones untouched.
        let again = collect(&private, out.path(), &mut 0);
        assert_eq!(again.saved.len(), 2);
        assert!(again.saved.iter().all(|p| !figures.saved.contains(p)));
        assert_eq!(std::fs::read(&figures.saved[0]).unwrap(), png(2));
    }

    #[test]
    fn at_most_max_figures_are_saved() {
        let private = GuestDir::create("figures-test-").unwrap();
        let out = tempfile::tempdir().unwrap();
        for n in 0..MAX_FIGURES + 3 {
            std::fs::write(private.path().join(format!("figure-{n}.png")), png(1)).unwrap();
        }
        let figures = collect(&private, out.path(), &mut 0);
        assert_eq!(figures.saved.len(), MAX_FIGURES);
        assert!(
            figures
                .notes
                .contains(&format!("{} figures", MAX_FIGURES + 3))
        );
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), MAX_FIGURES);
    }
}
