//! The host's only ways into the dirs a guest can write (its scratch dir and the private io dir).
//!
//! The guest controls every name and every link in them, and can rename things while the host
//! looks (its file operations run on tokio's blocking threads while the host's watcher runs), so
//! nothing here resolves a path the guest wrote or a path longer than one name: each step is
//! relative to an open directory handle, never follows a symlink (`O_NOFOLLOW`,
//! `AT_SYMLINK_NOFOLLOW`), and a file is checked on the handle that is then read (`fstat` after
//! `open`), so a swap between a check and a read cannot point the host anywhere else. The guest
//! cannot create absolute symlinks (cap-std refuses them) but can create relative ones such as
//! `../../../home/you/.ssh/id_ed25519`; std's path-based calls would follow those.

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use std::ffi::CStr;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A temporary dir the guest may write, with the handle the host reaches it through. Its path is
/// the host's choice and is only handed to wasmtime as a preopen; dropping it removes the tree
/// (std's `remove_dir_all`, which does not follow symlinks).
pub struct GuestDir {
    root: tempfile::TempDir,
    fd: OwnedFd,
}

/// How far a walk over a guest dir goes before it stops counting: a guest can make trees of any
/// shape, and the walk runs every few hundred milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct WalkBudget {
    /// Entries of any kind (files, dirs, links); also a cap on the inodes a session holds.
    pub entries: u64,
    /// Levels below the root (one open handle per level while walking).
    pub depth: usize,
}

/// What a walk found: apparent bytes of regular files and entries of any kind, and whether it
/// stopped at the budget (the dir then holds at least this much).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub entries: u64,
    pub too_deep: bool,
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, other: Usage) -> Usage {
        Usage {
            bytes: self.bytes.saturating_add(other.bytes),
            entries: self.entries.saturating_add(other.entries),
            too_deep: self.too_deep || other.too_deep,
        }
    }
}

impl Usage {
    /// Why this usage is over the limits, if it is (for the cell's stderr).
    pub fn excess(&self, max_bytes: u64, budget: WalkBudget) -> Option<String> {
        if self.bytes > max_bytes {
            Some(format!("went over its {} MB limit", max_bytes >> 20))
        } else if self.entries > budget.entries {
            Some(format!(
                "holds more than {} files and directories",
                budget.entries
            ))
        } else if self.too_deep {
            Some(format!(
                "is nested more than {} directories deep",
                budget.depth
            ))
        } else {
            None
        }
    }
}

impl GuestDir {
    /// A new empty dir under the system temp dir, named with `prefix`.
    pub fn create(prefix: &str) -> std::io::Result<GuestDir> {
        let root = tempfile::Builder::new().prefix(prefix).tempdir()?;
        let fd = rustix::fs::open(
            root.path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(GuestDir { root, fd })
    }

    /// The host path, for wasmtime's preopen and for the host to create entries before the guest
    /// runs; never joined with a name read from the dir.
    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// The names of the dir's direct children that are valid UTF-8 (others cannot be names the
    /// host looks for).
    pub fn names(&self) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in Dir::read_from(&self.fd)? {
            if let Ok(name) = entry?.file_name().to_str()
                && name != "."
                && name != ".."
            {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    /// The bytes of the direct child `name` if it is a regular file with no other links, of at
    /// most `max` bytes; `Ok(None)` when there is no such entry; `Err` says why it was refused.
    pub fn read_file(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(format!("{name:?} is not a plain file name"));
        }
        let fd = match rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::LOOP) => return Err(format!("{name} is a symbolic link")),
            Err(e) => return Err(format!("cannot open {name} ({e})")),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| format!("cannot stat {name} ({e})"))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(format!("{name} is not a regular file"));
        }
        if stat.st_nlink != 1 {
            return Err(format!("{name} has other hard links"));
        }
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if size > max {
            return Err(format!(
                "{name} has {size} bytes, over the {max}-byte limit"
            ));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        std::fs::File::from(fd)
            .take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {name} ({e})"))?;
        if bytes.len() as u64 > max {
            return Err(format!("{name} grew past the {max}-byte limit"));
        }
        Ok(Some(bytes))
    }

    /// Removes every entry (the tree under a dir too, without following symlinks).
    pub fn clear(&self) -> std::io::Result<()> {
        let mut names = Vec::new();
        for entry in Dir::read_from(&self.fd)? {
            let name = entry?.file_name().to_owned();
            if !matches!(name.to_bytes(), b"." | b"..") {
                names.push(name);
            }
        }
        for name in names {
            let stat = match rustix::fs::statat(&self.fd, &*name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
                // The root's path is the host's and `name` is one component: std's remove_dir_all
                // opens it with O_NOFOLLOW and works below it by handle.
                let name = std::ffi::OsStr::from_bytes(name.to_bytes());
                std::fs::remove_dir_all(self.root.path().join(name))?;
            } else {
                rustix::fs::unlinkat(&self.fd, &*name, AtFlags::empty())?;
            }
        }
        Ok(())
    }

    /// What the dir holds, walked by handle (see the module doc); stops once over `budget`.
    pub fn usage(&self, budget: WalkBudget) -> Usage {
        let mut usage = Usage::default();
        walk(self.fd.as_fd(), 0, budget, &mut usage);
        usage
    }
}

/// Adds what `dir` holds to `usage`. Entries that vanish or change kind under the walk are
/// skipped: they were the guest's to move, and the next walk sees where they went.
fn walk(dir: BorrowedFd<'_>, depth: usize, budget: WalkBudget, usage: &mut Usage) {
    let Ok(entries) = Dir::read_from(dir) else {
        return;
    };
    for entry in entries {
        let Ok(entry) = entry else { return };
        let name: &CStr = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        usage.entries += 1;
        if usage.entries > budget.entries || usage.too_deep {
            return;
        }
        let Ok(stat) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => {
                usage.bytes = usage
                    .bytes
                    .saturating_add(u64::try_from(stat.st_size).unwrap_or(0));
            }
            FileType::Directory if depth + 1 > budget.depth => usage.too_deep = true,
            FileType::Directory => {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                if let Ok(child) = rustix::fs::openat(dir, name, flags, Mode::empty()) {
                    walk(child.as_fd(), depth + 1, budget, usage);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{GuestDir, Usage, WalkBudget};
    use std::os::unix::fs::symlink;

    const BUDGET: WalkBudget = WalkBudget {
        entries: 1000,
        depth: 8,
    };

    /// A host file the guest dir's links point at, with content the tests must never see.
    fn host_secret() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, b"host secret").unwrap();
        (dir, path)
    }

    #[test]
    fn read_file_reads_only_plain_regular_files_within_the_cap() {
        let dir = GuestDir::create("guest-fs-test-").unwrap();
        let (_keep, secret) = host_secret();
        std::fs::write(dir.path().join("ok.png"), b"0123456789").unwrap();
        assert_eq!(
            dir.read_file("ok.png", 10).unwrap().as_deref(),
            Some(&b"0123456789"[..])
        );
        assert!(dir.read_file("ok.png", 9).unwrap_err().contains("limit"));
        assert_eq!(dir.read_file("missing.png", 10), Ok(None));

        symlink(&secret, dir.path().join("link.png")).unwrap();
        assert!(
            dir.read_file("link.png", 100)
                .unwrap_err()
                .contains("symbolic link")
        );
        std::fs::hard_link(&secret, dir.path().join("hard.png")).unwrap();
        assert!(
            dir.read_file("hard.png", 100)
                .unwrap_err()
                .contains("hard links")
        );
        std::fs::create_dir(dir.path().join("dir.png")).unwrap();
        assert!(
            dir.read_file("dir.png", 100)
                .unwrap_err()
                .contains("not a regular file")
        );
        for name in ["../secret", "a/b", "..", ""] {
            assert!(dir.read_file(name, 100).is_err(), "{name:?}");
        }
        assert_eq!(std::fs::read(&secret).unwrap(), b"host secret");
    }

    #[test]
    fn usage_counts_files_below_the_root_and_never_follows_links() {
        let dir = GuestDir::create("guest-fs-test-").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("big"), vec![0u8; 50_000]).unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f"), vec![0u8; 300]).unwrap();
        std::fs::write(dir.path().join("g"), vec![0u8; 20]).unwrap();
        symlink(outside.path(), dir.path().join("a/out")).unwrap();
        symlink(outside.path().join("big"), dir.path().join("big")).unwrap();
        let usage = dir.usage(BUDGET);
        assert_eq!(
            usage,
            Usage {
                bytes: 320,
                entries: 6,
                too_deep: false
            }
        );
        assert_eq!(usage.excess(320, BUDGET), None);
        assert!(usage.excess(319, BUDGET).is_some());
    }

    #[test]
    fn usage_stops_at_the_entry_and_depth_budgets() {
        let dir = GuestDir::create("guest-fs-test-").unwrap();
        for i in 0..20 {
            std::fs::write(dir.path().join(i.to_string()), b"").unwrap();
        }
        let budget = WalkBudget {
            entries: 10,
            depth: 8,
        };
        let usage = dir.usage(budget);
        assert!(usage.entries > 10);
        assert!(
            usage
                .excess(1 << 20, budget)
                .unwrap()
                .contains("more than 10 files")
        );

        let deep = GuestDir::create("guest-fs-test-").unwrap();
        std::fs::create_dir_all(deep.path().join("1/2/3/4/5/6/7/8/9/10")).unwrap();
        let usage = deep.usage(BUDGET);
        assert!(usage.too_deep);
        assert!(
            usage
                .excess(1 << 20, BUDGET)
                .unwrap()
                .contains("8 directories deep")
        );
        std::fs::remove_dir_all(deep.path().join("1/2/3/4/5/6/7/8")).unwrap();
        assert!(!deep.usage(BUDGET).too_deep);
    }

    #[test]
    fn clear_removes_entries_but_not_what_links_point_at() {
        let dir = GuestDir::create("guest-fs-test-").unwrap();
        let (outside, secret) = host_secret();
        std::fs::create_dir_all(dir.path().join("d/e")).unwrap();
        std::fs::write(dir.path().join("d/e/f"), b"x").unwrap();
        std::fs::write(dir.path().join("status.json"), b"{}").unwrap();
        symlink(&secret, dir.path().join("file-link")).unwrap();
        symlink(outside.path(), dir.path().join("dir-link")).unwrap();
        symlink(outside.path(), dir.path().join("d/inner-link")).unwrap();
        dir.clear().unwrap();
        assert_eq!(dir.names().unwrap(), Vec::<String>::new());
        assert_eq!(std::fs::read(&secret).unwrap(), b"host secret");
    }
}
