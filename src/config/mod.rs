//! The value types every role's configuration is built from, written once: sizes and durations
//! as a file or a flag writes them ([`ByteSize`], [`Dur`]), addresses ([`HostPort`], with the one
//! parser of `host:port`), the reactor thread count ([`resolve_threads`]), and keyword enums made
//! by one macro ([`keyword!`](crate::keyword)) with their names, parsing, `Display`, serde and
//! clap.
//!
//! A role's config is layered the same way everywhere: defaults, then the file (read by
//! [`crate::conffile`], whose errors read `file:line:col: key.path: what`), then the flags, which
//! fill the same struct the file fills; validation runs once on the result, and `--print-config`
//! serializes the resolved config back to TOML with these types' `Serialize`.

mod address;
#[macro_use]
pub(crate) mod keyword;
mod value;

pub(crate) use address::*;
pub(crate) use keyword::UnknownKeyword;
pub(crate) use value::*;

/// Declares a config layer: a struct of `Option` fields that a file (serde) and the command
/// line (clap, flattened into the role's args) both fill, and `overlay`, which lays one layer
/// over another key by key and names the keys the upper layer gave. Attributes pass through, so
/// one field carries its serde name, its flag, its value parser and its `--help` text.
#[macro_export]
#[doc(hidden)]
macro_rules! layer {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : Option<$ty:ty> ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: Option<$ty> ),+
        }

        impl $name {
            /// Every key `top` gives replaces this layer's; returns the names of those keys.
            pub fn overlay(&mut self, top: &$name) -> Vec<&'static str> {
                let mut given = Vec::new();
                $(
                    if let Some(v) = &top.$field {
                        self.$field = Some(v.clone());
                        given.push(stringify!($field));
                    }
                )+
                given
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::layer! {
        #[derive(Debug, Default, PartialEq)]
        struct Keys {
            /// A size.
            size: Option<u64>,
            name: Option<String>,
        }
    }

    #[test]
    fn the_upper_layer_wins_key_by_key_and_says_which() {
        let mut file = Keys { size: Some(1), name: Some("file".into()) };
        let given = file.overlay(&Keys { size: None, name: Some("flag".into()) });
        assert_eq!(given, ["name"]);
        assert_eq!(file, Keys { size: Some(1), name: Some("flag".into()) });
        assert!(file.overlay(&Keys::default()).is_empty());
    }
}
