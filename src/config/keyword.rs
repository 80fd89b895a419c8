//! Keyword enums (`balance = "p2c"`, `--mode echo`, `protocol = "websocket"`): one macro writes
//! the enum, its canonical names, parsing (any case, `-` for `_`, aliases), `Display`, serde and
//! clap, so every role reads and prints a keyword the same way and refuses an unknown one with
//! the same words and the same list from a flag and from a file:
//! `unknown balance algorithm "x" (expected one of a, b or c)` (a file's error adds where:
//! `lb.toml:3:11: balance: unknown balance algorithm ...`).

use std::fmt;

/// A keyword that is none of the accepted ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownKeyword {
    /// What is named (`balance algorithm`).
    pub what: &'static str,
    /// What was written.
    pub name: String,
    /// The canonical names.
    pub names: &'static [&'static str],
}

impl fmt::Display for UnknownKeyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?} (expected {})", self.what, self.name, expected(self.names))
    }
}

/// `a or b`, `one of a, b or c`.
pub fn expected(names: &[&str]) -> String {
    match names {
        [] => "nothing".into(),
        [one] => one.to_string(),
        [a, b] => format!("{a} or {b}"),
        [head @ .., last] => format!("one of {} or {last}", head.join(", ")),
    }
}

/// A keyword read from a file: the name as [`std::str::FromStr`] reads it, refused in the words
/// a flag is refused in ([`UnknownKeyword`]'s), with the accepted list.
pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err = UnknownKeyword>,
{
    let s = <String as serde::Deserialize>::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// A keyword read from a flag: clap's parser of every keyword enum (its `ValueParserFactory`,
/// so a field of that type needs no `value_parser`), refused in [`UnknownKeyword`]'s words, with
/// `--help` listing the canonical names.
pub struct Parser<T> {
    names: &'static [&'static str],
    of: std::marker::PhantomData<fn() -> T>,
}

impl<T> Parser<T> {
    pub fn new(names: &'static [&'static str]) -> Parser<T> {
        Parser { names, of: std::marker::PhantomData }
    }
}

impl<T> Clone for Parser<T> {
    fn clone(&self) -> Parser<T> {
        Parser::new(self.names)
    }
}

impl<T> clap::builder::TypedValueParser for Parser<T>
where
    T: std::str::FromStr<Err = UnknownKeyword> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        // clap wraps the reason as it does every other flag's
        // (`invalid value 'x' for '--mode <MODE>': unknown mode "x" (expected ...)`).
        let words = |s: &str| s.parse::<T>().map_err(|e| e.to_string());
        words.parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(self.names.iter().map(|n| clap::builder::PossibleValue::new(*n))))
    }
}

impl std::error::Error for UnknownKeyword {}

/// How a keyword is compared: trimmed, lower case, `-` read as `_`.
pub fn normalize(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace('-', "_")
}

/// Declares a keyword enum: each variant with its canonical name and any aliases.
///
/// ```ignore
/// keyword! {
///     /// splice(2) use.
///     pub enum SpliceMode("splice mode") {
///         /// Per direction.
///         Auto = "auto",
///         On = "on" | "yes",
///     }
/// }
/// ```
#[macro_export]
#[doc(hidden)]
macro_rules! keyword {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in the order the docs list them.
            #[allow(dead_code)]
            pub const ALL: [$name; [$($word),+].len()] = [$($name::$variant),+];
            /// The canonical names, in the same order.
            pub const NAMES: &'static [&'static str] = &[$($word),+];

            /// Canonical name, as `--print-config` writes it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::config::UnknownKeyword;

            /// A name or alias, in any case, `-` for `_`.
            fn from_str(s: &str) -> Result<$name, $crate::config::UnknownKeyword> {
                match $crate::config::keyword::normalize(s).as_str() {
                    $( $word $(| $alias)* => Ok($name::$variant), )+
                    _ => Err($crate::config::UnknownKeyword {
                        what: $what,
                        name: s.trim().to_string(),
                        names: $name::NAMES,
                    }),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                $crate::config::keyword::deserialize(d)
            }
        }

        impl ::clap::builder::ValueParserFactory for $name {
            type Parser = $crate::config::keyword::Parser<$name>;

            fn value_parser() -> Self::Parser {
                $crate::config::keyword::Parser::new($name::NAMES)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    keyword! {
        /// A test keyword.
        enum Colour("colour") {
            Red = "red",
            DarkBlue = "dark_blue" | "navy",
            Green = "green",
        }
    }

    #[test]
    fn names_parse_print_and_refuse_alike() {
        for (text, want) in [("red", Colour::Red), (" RED ", Colour::Red), ("Dark-Blue", Colour::DarkBlue)] {
            assert_eq!(text.parse::<Colour>(), Ok(want), "{text}");
        }
        assert_eq!("navy".parse::<Colour>(), Ok(Colour::DarkBlue));
        for c in Colour::ALL {
            assert_eq!(c.to_string().parse::<Colour>(), Ok(c));
        }
        assert_eq!(Colour::NAMES, ["red", "dark_blue", "green"]);
        let e = "pink".parse::<Colour>().unwrap_err().to_string();
        assert_eq!(e, "unknown colour \"pink\" (expected one of red, dark_blue or green)");
        let two = UnknownKeyword { what: "protocol", name: "udp".into(), names: &["tcp", "websocket"] };
        assert_eq!(two.to_string(), "unknown protocol \"udp\" (expected tcp or websocket)");
    }

    #[test]
    fn serde_and_clap_use_the_same_names() {
        #[derive(Debug, serde::Deserialize, serde::Serialize)]
        struct T {
            c: Colour,
        }
        let t: T = toml::from_str("c = \"Navy\"").unwrap();
        assert_eq!(t.c, Colour::DarkBlue);
        assert_eq!(toml::to_string(&t).unwrap(), "c = \"dark_blue\"\n");
        let e = toml::from_str::<T>("c = \"pink\"").unwrap_err();
        // The flag's words, not serde's `unknown variant`.
        assert_eq!(e.message(), "unknown colour \"pink\" (expected one of red, dark_blue or green)");
        // A flag of the type, with no value_parser given: the same words, and --help lists the
        // canonical names.
        #[derive(clap::Parser, Debug)]
        struct Flags {
            #[arg(long)]
            colour: Option<Colour>,
        }
        use clap::Parser as _;
        assert_eq!(Flags::try_parse_from(["t", "--colour", "NAVY"]).unwrap().colour, Some(Colour::DarkBlue));
        let e = Flags::try_parse_from(["t", "--colour", "pink"]).unwrap_err().to_string();
        let want = "invalid value 'pink' for '--colour <COLOUR>': unknown colour \"pink\" (expected one of red, dark_blue or green)";
        assert!(e.starts_with(&format!("error: {want}")), "{e}");
        use clap::CommandFactory;
        let help = Flags::command().render_help().to_string();
        assert!(help.contains("[possible values: red, dark_blue, green]"), "{help}");
    }
}
