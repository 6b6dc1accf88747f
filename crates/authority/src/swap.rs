//! The one place that retries a compare-and-swap.
//!
//! Every change to a stored record (a request, a person's second factor) is read, decided on
//! and written back only if nobody changed it in between. When someone did, the decision is
//! taken again on what they wrote: it may now be refused (the request was decided meanwhile),
//! or come out differently (another approval counted first). Each operation states its
//! decision once, as a closure; this module owns the loop around it.

use jitca_store::{AuditRecord, Request, Swap, Versioned};

use crate::{Authority, AuthorityError};

/// The outcome of one attempt at a compare-and-swap.
pub(crate) enum Attempt<T> {
    /// Written (or nothing needed writing): this is the result.
    Done(T),
    /// Someone changed the record first: read it again and decide again.
    Conflict,
}

impl<T> From<(Swap, T)> for Attempt<T> {
    fn from((swap, value): (Swap, T)) -> Self {
        match swap {
            Swap::Done => Attempt::Done(value),
            Swap::Conflict => Attempt::Conflict,
        }
    }
}

/// Reads the record with `read`, hands it to `attempt` (which decides and swaps), and on a
/// conflict reads again, until an attempt is done or refused. The only retry loop of the
/// crate. Conflicts end: each one means another writer made progress.
pub(crate) fn retry<C, T>(
    mut read: impl FnMut() -> Result<C, AuthorityError>,
    mut attempt: impl FnMut(C) -> Result<Attempt<T>, AuthorityError>,
) -> Result<T, AuthorityError> {
    loop {
        if let Attempt::Done(value) = attempt(read()?)? {
            return Ok(value);
        }
    }
}

/// What a decision on a stored request comes to.
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per attempt and consumed at once; boxing would only allocate"
)]
pub(crate) enum Step<T> {
    /// Write `next` with these audit records over the request as read.
    Write(Request, Vec<AuditRecord>),
    /// Write nothing; return `T` (`Infallible` where a decision always writes or refuses).
    Keep(T),
}

/// What [`Authority::change_request`] did.
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per change and consumed at once; boxing would only allocate"
)]
pub(crate) enum Changed<T> {
    /// The request was written: the new record.
    Written(Request),
    /// Nothing was written.
    Kept(T),
}

impl Authority {
    /// Reads request `id`, lets `decide` choose its next state, and swaps it in; on a conflict
    /// `decide` runs again on the record as it now stands.
    pub(crate) fn change_request<T>(
        &self,
        id: &str,
        mut decide: impl FnMut(&Versioned) -> Result<Step<T>, AuthorityError>,
    ) -> Result<Changed<T>, AuthorityError> {
        retry(
            || self.find(id),
            |current| {
                Ok(match decide(&current)? {
                    Step::Keep(value) => Attempt::Done(Changed::Kept(value)),
                    Step::Write(next, events) => {
                        let swap = self.store.replace_request(&current, &next, &events)?;
                        (swap, Changed::Written(next)).into()
                    }
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn a_conflict_reads_again_and_decides_again_on_what_was_read() {
        let reads = Cell::new(0);
        let decided = retry(
            || {
                reads.set(reads.get() + 1);
                Ok(reads.get())
            },
            |read| {
                Ok(if read < 3 {
                    Attempt::Conflict
                } else {
                    Attempt::Done(read * 10)
                })
            },
        );
        assert_eq!(decided.unwrap(), 30);
        assert_eq!(reads.get(), 3);
    }

    #[test]
    fn a_refusal_or_a_failed_read_ends_the_retry_at_once() {
        let reads = Cell::new(0);
        let refused: Result<(), _> = retry(
            || {
                reads.set(reads.get() + 1);
                Ok(())
            },
            |()| Err(AuthorityError::Conflict("decided meanwhile".into())),
        );
        assert_eq!(refused.unwrap_err().to_string(), "decided meanwhile");
        assert_eq!(reads.get(), 1);
        let unread: Result<(), _> = retry(
            || Err(AuthorityError::NotFound("x".into())),
            |()| -> Result<Attempt<()>, AuthorityError> { unreachable!("nothing was read") },
        );
        assert!(matches!(unread, Err(AuthorityError::NotFound(_))));
    }

    #[test]
    fn a_swap_outcome_becomes_an_attempt() {
        assert!(matches!(Attempt::from((Swap::Done, 1)), Attempt::Done(1)));
        assert!(matches!(
            Attempt::from((Swap::Conflict, 1)),
            Attempt::Conflict
        ));
    }
}
