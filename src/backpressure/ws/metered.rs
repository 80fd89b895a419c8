//! [`Metered`]: the byte counts and the read budget under tungstenite.

use std::io::{self, Read, Write};

/// A stream wrapper that counts bytes and can cap reads with a budget.
///
/// With a budget, `read` returns `WouldBlock` once the budget is spent, *without* touching the
/// socket; [`Metered::budget_exhausted`] tells that apart from a real `WouldBlock`, so the
/// reactor keeps its READABLE bit and arms the `read_delay` timer instead of waiting for an edge.
#[derive(Debug)]
pub struct Metered<S> {
    inner: S,
    read_bytes: u64,
    written_bytes: u64,
    budget: Option<usize>,
    starved: bool,
}

impl<S> Metered<S> {
    /// Counts bytes; reads are not limited.
    pub fn new(inner: S) -> Self {
        Metered { inner, read_bytes: 0, written_bytes: 0, budget: None, starved: false }
    }

    /// Counts bytes; reads stop after `budget` bytes until [`Metered::refill`].
    #[cfg(test)]
    pub fn with_read_budget(inner: S, budget: usize) -> Self {
        Metered { budget: Some(budget), ..Metered::new(inner) }
    }

    /// Sets the read budget to `budget` bytes (it does not accumulate).
    pub fn refill(&mut self, budget: usize) {
        self.budget = Some(budget);
        self.starved = false;
    }

    /// True when the last read was refused because the budget was spent.
    pub fn budget_exhausted(&self) -> bool {
        self.starved
    }

    pub fn read_bytes(&self) -> u64 {
        self.read_bytes
    }

    pub fn written_bytes(&self) -> u64 {
        self.written_bytes
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Read> Read for Metered<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = match self.budget {
            Some(0) => {
                self.starved = true;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Some(b) => buf.len().min(b),
            None => buf.len(),
        };
        let n = self.inner.read(&mut buf[..want])?;
        self.read_bytes += n as u64;
        if let Some(b) = self.budget.as_mut() {
            *b -= n;
        }
        Ok(n)
    }
}

impl<S: Write> Write for Metered<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written_bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
