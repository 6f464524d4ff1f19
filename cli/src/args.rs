//! Command-line parsing for the client commands: `lexopt` tokenizes, a small table of the
//! options each command accepts decides what is allowed, so every command refuses an option
//! it does not know (exit 2) instead of ignoring it.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;

use super::Failure;

/// One option a command accepts.
#[derive(Clone, Copy, Debug)]
pub struct Opt {
    /// Long name without the dashes.
    pub long: &'static str,
    /// Short letter, if any.
    pub short: Option<char>,
    /// Whether it takes a value (`--lines 50`) or is a switch (`--json`).
    pub value: bool,
}

impl Opt {
    /// An option that takes a value.
    pub const fn value(long: &'static str) -> Self {
        Self {
            long,
            short: None,
            value: true,
        }
    }

    /// A switch.
    pub const fn switch(long: &'static str) -> Self {
        Self {
            long,
            short: None,
            value: false,
        }
    }

    /// The same option with a short letter.
    pub const fn short(mut self, c: char) -> Self {
        self.short = Some(c);
        self
    }
}

/// The options every command that talks to a gateway accepts.
pub const QUERY: &[Opt] = &[
    Opt::value("url"),
    Opt::value("token"),
    Opt::value("password"),
    Opt::value("timeout"),
    Opt::switch("json"),
];

/// Parsed arguments: positionals in order, option values by long name, switches present.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Positional arguments.
    pub positionals: Vec<String>,
    values: BTreeMap<&'static str, String>,
    switches: BTreeSet<&'static str>,
}

impl Parsed {
    /// The value of an option, if given.
    pub fn value(&self, long: &str) -> Option<&str> {
        self.values.get(long).map(String::as_str)
    }

    /// Whether a switch was given.
    pub fn switch(&self, long: &str) -> bool {
        self.switches.contains(long)
    }

    /// A value that must be a non-negative integer.
    pub fn number(&self, long: &str) -> Result<Option<u64>, Failure> {
        match self.value(long) {
            None => Ok(None),
            Some(v) => {
                v.trim().parse().map(Some).map_err(|_| {
                    Failure::usage(format!("--{long} must be a whole number, got {v:?}"))
                })
            }
        }
    }

    /// A duration in milliseconds (`--timeout`, `--invoke-timeout`): at most a day, so that a
    /// deadline computed from it never overflows.
    pub fn millis(&self, long: &str) -> Result<Option<u64>, Failure> {
        const MAX_MS: u64 = 24 * 60 * 60 * 1000;
        match self.number(long)? {
            Some(ms) if ms > MAX_MS => Err(Failure::usage(format!(
                "--{long} {ms} is more than a day ({MAX_MS} ms)"
            ))),
            other => Ok(other),
        }
    }

    /// A value that must be given.
    pub fn required(&self, long: &str, usage: &str) -> Result<&str, Failure> {
        self.value(long)
            .ok_or_else(|| Failure::usage(format!("--{long} is required\nusage: {usage}")))
    }

    /// Exactly `n` positionals, else a usage error naming `usage`.
    pub fn expect_positionals(&self, n: usize, usage: &str) -> Result<(), Failure> {
        if self.positionals.len() == n {
            Ok(())
        } else {
            Err(Failure::usage(format!(
                "expected {n} argument(s), got {}\nusage: {usage}",
                self.positionals.len()
            )))
        }
    }
}

/// Whether the arguments ask for help (`-h`, `--help`, `help`).
pub fn wants_help(args: &[OsString]) -> bool {
    args.iter().any(|a| a == "-h" || a == "--help") || args.first().is_some_and(|a| a == "help")
}

/// A group's subcommand (empty when missing) and the arguments after it.
pub fn subcommand(argv: Vec<OsString>) -> (String, Vec<OsString>) {
    let mut it = argv.into_iter();
    let sub = it
        .next()
        .and_then(|s| s.into_string().ok())
        .unwrap_or_default();
    (sub, it.collect())
}

/// The usage error for a missing or unknown subcommand of `group`.
pub fn bad_subcommand(group: &str, sub: &str, usage: &[&str]) -> Failure {
    let what = if sub.is_empty() {
        format!("{group} needs a subcommand")
    } else {
        format!("unknown {group} subcommand {sub:?}")
    };
    Failure::usage(format!("{what}\nusage:\n  {}", usage.join("\n  ")))
}

/// Parse `args` against the options in `opts` (and `extra`).
pub fn parse(args: Vec<OsString>, opts: &[Opt], extra: &[Opt]) -> Result<Parsed, Failure> {
    use lexopt::Arg;
    let mut parser = lexopt::Parser::from_args(args);
    let mut out = Parsed::default();
    let find_long = |name: &str| opts.iter().chain(extra).find(|o| o.long == name).copied();
    let find_short = |c: char| {
        opts.iter()
            .chain(extra)
            .find(|o| o.short == Some(c))
            .copied()
    };
    loop {
        let arg = parser.next().map_err(|e| Failure::usage(e.to_string()))?;
        let (opt, shown) = match arg {
            None => break,
            Some(Arg::Value(v)) => {
                out.positionals.push(
                    v.into_string()
                        .map_err(|v| Failure::usage(format!("argument is not UTF-8: {v:?}")))?,
                );
                continue;
            }
            Some(Arg::Long(name)) => (find_long(name), format!("--{name}")),
            Some(Arg::Short(c)) => (find_short(c), format!("-{c}")),
        };
        let opt = opt.ok_or_else(|| Failure::usage(format!("unknown option {shown}")))?;
        if opt.value {
            let v = parser.value().map_err(|e| Failure::usage(e.to_string()))?;
            let v = v
                .into_string()
                .map_err(|v| Failure::usage(format!("{shown} is not UTF-8: {v:?}")))?;
            out.values.insert(opt.long, v);
        } else {
            out.switches.insert(opt.long);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn values_switches_and_positionals() {
        let p = parse(
            os(&[
                "health",
                "--url=ws://x:1",
                "--json",
                "--timeout",
                "5",
                "-n",
                "3",
            ]),
            QUERY,
            &[Opt::value("lines").short('n')],
        )
        .unwrap();
        assert_eq!(p.positionals, ["health"]);
        assert_eq!(p.value("url"), Some("ws://x:1"));
        assert!(p.switch("json"));
        assert_eq!(p.number("timeout").unwrap(), Some(5));
        assert_eq!(p.millis("timeout").unwrap(), Some(5));
        assert_eq!(p.number("lines").unwrap(), Some(3));
    }

    #[test]
    fn unknown_option_and_bad_number_are_usage_errors() {
        let e = parse(os(&["--bogus"]), QUERY, &[]).unwrap_err();
        assert_eq!(e.exit, super::super::Exit::Usage);
        assert!(e.message.contains("--bogus"));
        let p = parse(os(&["--timeout", "soon"]), QUERY, &[]).unwrap();
        assert_eq!(
            p.number("timeout").unwrap_err().exit,
            super::super::Exit::Usage
        );
        assert!(parse(os(&["--url"]), QUERY, &[]).is_err());
        let p = parse(os(&["--timeout", "18446744073709551615"]), QUERY, &[]).unwrap();
        assert_eq!(
            p.millis("timeout").unwrap_err().exit,
            super::super::Exit::Usage
        );
    }
}
