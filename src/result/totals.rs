//! goon's counts of one result (or of a fleet), as `report merge` and the HTML page read them.

use crate::net::Cause;

/// goon's counts of one result (or of the fleet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub total: u64,
    pub dialing: u64,
    pub established: u64,
    pub closed: u64,
    pub error: u64,
    pub not_initiated: u64,
    pub total_established: u64,
    pub max_concurrent_established: u64,
    pub errors: [u64; 7],
}

impl Totals {
    pub(crate) fn add(&mut self, o: &Totals) {
        self.total += o.total;
        self.dialing += o.dialing;
        self.established += o.established;
        self.closed += o.closed;
        self.error += o.error;
        self.not_initiated += o.not_initiated;
        self.total_established += o.total_established;
        self.max_concurrent_established += o.max_concurrent_established;
        for (a, b) in self.errors.iter_mut().zip(o.errors.iter()) {
            *a += b;
        }
    }

    /// Reads a result's `errors.CAUSE` and `counts.KEY` (in that order) with `int`, which is
    /// given each key's dotted path: strict in `report merge`, lenient in `report html`.
    pub(crate) fn read<E>(int: impl Fn(&str) -> Result<u64, E>) -> Result<Totals, E> {
        let mut errors = [0u64; 7];
        for c in Cause::ALL {
            errors[c.index()] = int(&format!("errors.{}", c.name()))?;
        }
        Ok(Totals {
            total: int("counts.total")?,
            dialing: int("counts.dialing")?,
            established: int("counts.established")?,
            closed: int("counts.closed")?,
            error: int("counts.error")?,
            not_initiated: int("counts.not_initiated")?,
            total_established: int("counts.total_established")?,
            max_concurrent_established: int("counts.max_concurrent_established")?,
            errors,
        })
    }

    /// goon's exit status over these counts: 1 if some connection never finished dialing,
    /// else 2 if any errored, else 0.
    pub(crate) fn exit_code(&self) -> u8 {
        if self.not_initiated > 0 || self.dialing > 0 {
            1
        } else if self.error > 0 {
            2
        } else {
            0
        }
    }
}
