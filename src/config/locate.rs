//! Where a key path (`tools.code_interpreter.timeout`) is written in a YAML (or JSON) text, so checks
//! made after parsing — which see typed values, not text — still report `file:line:column`. The text
//! is parsed again into a tree of keys and their spans only when a check fails.

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};
use std::fmt;

/// The location of the deepest key of `path` present in `text`: the key itself when the whole path
/// is there, else the last key found on the way (the mapping where the missing key belongs). `None`
/// when the text does not parse or not even the first key is there.
pub fn locate(text: &str, path: &[&str]) -> Option<Location> {
    // Non-finite floats (`.nan`) are values the checks refuse, so they must not stop this parse.
    let mut options = serde_saphyr::Options::default();
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
    let root: Node = serde_saphyr::from_str_with_options(text, options).ok()?;
    let mut node = &root;
    let mut found = None;
    for key in path {
        let Node::Map(entries) = node else { break };
        let Some((span, child)) = entries
            .iter()
            .find(|(k, _)| k.value.0.as_deref() == Some(*key))
        else {
            break;
        };
        found = Some(span.referenced);
        node = child;
    }
    found.filter(|l| *l != Location::UNKNOWN)
}

/// A mapping's keys with their locations and values; anything else is a leaf.
enum Node {
    Map(Vec<(Spanned<KeyText>, Node)>),
    Leaf,
}

/// A scalar key as text; `None` for keys that are themselves collections.
struct KeyText(Option<String>);

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            entries.push((key, map.next_value::<Node>()?));
        }
        Ok(Node::Map(entries))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Node::Leaf)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
}

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyText, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyText, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_the_nearest_parent() {
        let text =
            "name: a\nmodel:\n  backend: local\ntools:\n  code_interpreter:\n    timeout: .nan\n";
        let at = |path: &[&str]| locate(text, path).map(|l| (l.line(), l.column()));
        assert_eq!(at(&["tools", "code_interpreter", "timeout"]), Some((6, 5)));
        assert_eq!(at(&["model", "path"]), Some((2, 1)));
        assert_eq!(at(&["nowhere"]), None);
        assert_eq!(
            locate(
                "{\"mcpServers\": {\"x\": {\"timeout\": 0}}}",
                &["mcpServers", "x", "timeout"]
            )
            .map(|l| (l.line(), l.column())),
            Some((1, 23))
        );
        assert_eq!(locate("[unclosed", &["a"]), None);
    }
}
