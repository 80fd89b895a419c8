//! `cpu_affinity` syntax: `"auto"`, `"off"` (any case) or a list of CPUs, read into the engine's
//! [`CpuAffinity`] placement policy (the engine places and pins; this reads what was written).

use crate::engine::affinity::CpuAffinity;
use crate::sys;

impl CpuAffinity {
    /// `"auto"` or `"off"` (any case); a list is built by the config reader.
    pub(crate) fn parse_word(s: &str) -> Result<CpuAffinity, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(CpuAffinity::Auto),
            "off" => Ok(CpuAffinity::Off),
            _ => Err(format!("{s:?} is not \"auto\", \"off\" or a list of CPU numbers such as [0, 1]")),
        }
    }

    /// A list of CPUs this process may run on: not empty, no CPU twice.
    pub(crate) fn from_list(cpus: Vec<usize>, allowed: &[usize]) -> Result<CpuAffinity, String> {
        if cpus.is_empty() {
            return Err("an empty list pins nothing (use \"off\")".into());
        }
        for (i, c) in cpus.iter().enumerate() {
            if cpus[..i].contains(c) {
                return Err(format!("CPU {c} is listed twice"));
            }
            if !allowed.contains(c) {
                return Err(format!(
                    "CPU {c} is not one this process may run on (allowed: {})",
                    sys::format_cpus(allowed)
                ));
            }
        }
        Ok(CpuAffinity::Cpus(cpus))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_parse_in_any_case_and_others_are_refused() {
        assert_eq!(CpuAffinity::parse_word("Auto"), Ok(CpuAffinity::Auto));
        assert_eq!(CpuAffinity::parse_word(" off "), Ok(CpuAffinity::Off));
        assert!(CpuAffinity::parse_word("on").unwrap_err().contains("not \"auto\", \"off\""));
        assert_eq!(CpuAffinity::default(), CpuAffinity::Off);
    }

    #[test]
    fn lists_must_name_allowed_cpus_once() {
        let allowed = [0, 1, 2, 3];
        assert_eq!(CpuAffinity::from_list(vec![2, 0], &allowed), Ok(CpuAffinity::Cpus(vec![2, 0])));
        assert!(CpuAffinity::from_list(vec![], &allowed).unwrap_err().contains("empty"));
        assert!(CpuAffinity::from_list(vec![1, 1], &allowed).unwrap_err().contains("listed twice"));
        let e = CpuAffinity::from_list(vec![4], &allowed).unwrap_err();
        assert!(e.contains("CPU 4") && e.contains("allowed: 0-3"), "{e}");
    }
}
