//! The result format every role and command shares (docs/json-format.md): what goon and bp
//! client write and what `report` reads, so that the roles and the `report` command import
//! this module and never each other.
//!
//! `sample.rs` is the per-interval sample and its cap, `block.rs` tcpgoon's final block and
//! the whole-run latency object, `totals.rs` a result's counts, `probe/` an idle probe's groups and verdict, `html/` the self-contained HTML
//! page of a result (`report html`, `goon --html`, `bp client --html`).

pub(crate) mod block;
pub(crate) mod html;
pub(crate) mod probe;
pub(crate) mod sample;
pub(crate) mod tls;
pub(crate) mod totals;
pub(crate) mod traffic;
pub(crate) mod ws;

/// Checks before a run (or a command) that the files its results go to at its end can be
/// written ([`check_output`]), and that they are distinct from each other and from the files
/// it reads: one file given twice would keep only what was written last.
pub(crate) fn check_outputs(
    outputs: &[(&str, Option<&std::path::Path>)],
    inputs: &[&std::path::Path],
) -> Result<(), crate::error::Error> {
    let given: Vec<(&str, &std::path::Path)> = outputs.iter().filter_map(|(f, p)| p.map(|p| (*f, p))).collect();
    for (i, (flag, p)) in given.iter().enumerate() {
        // Only --json-stream writes to standard output; elsewhere "-" would be a file named -.
        if p.as_os_str() == "-" {
            let msg = format!("{flag} -: this output takes a file name (--json-stream - writes to standard output)");
            return Err(crate::error::Error::Usage(msg));
        }
        if let Some((other, _)) = given[..i].iter().find(|(_, q)| same_file(p, q)) {
            let msg = format!("{flag} {}: the same file as {other}; give each output a file of its own", p.display());
            return Err(crate::error::Error::Usage(msg));
        }
        if inputs.iter().any(|q| same_file(p, q)) {
            let msg = format!("{flag} {}: also a file this command reads; writing it would replace it", p.display());
            return Err(crate::error::Error::Usage(msg));
        }
    }
    for (flag, p) in given {
        check_output(flag, p)?;
    }
    Ok(())
}

/// Whether two paths name one file: the same inode where both exist, else the same absolute
/// path (the parent directory resolved).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        (Err(_), Err(_)) => {
            let abs = |p: &std::path::Path| {
                let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
                Some(std::fs::canonicalize(parent).ok()?.join(p.file_name()?))
            };
            abs(a).is_some_and(|x| Some(x) == abs(b))
        }
        _ => false,
    }
}

/// Checks before a run that the file a result goes to at its end can be written, so that a bad
/// path is a one-line error now rather than after the whole test. The file is opened for
/// writing without truncating it, and removed again when this check created it.
fn check_output(flag: &str, path: &std::path::Path) -> Result<(), crate::error::Error> {
    let existed = path.exists();
    match std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(path) {
        Ok(_) => {
            if !existed {
                let _ = std::fs::remove_file(path);
            }
            Ok(())
        }
        Err(e) => Err(crate::error::Error::Usage(format!("{flag} {}: cannot write: {e}", path.display()))),
    }
}

/// The goon JSON format this netforge writes and `report merge` reads.
pub const FORMAT_VERSION: u64 = 2;

/// `--shard I/K` and `--shards K`: at most this many shards (and `report merge` reads no more).
pub(crate) const SHARDS_MAX: u64 = 65_536;
