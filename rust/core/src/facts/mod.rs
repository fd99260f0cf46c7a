//! The facts beside the index: each live node's subject, predicate and object (interned
//! per field, with the sorted list of the nodes of each term) and its confidence. A search
//! filter (exact `subject` / `predicate` / `object`, `min_confidence`) is evaluated from
//! them during the graph traversal ([`FactView`] is a [`Filter`]): no list of allowed ids
//! is built per search, whatever share of the nodes it allows.
//!
//! Locking: one `RwLock` (parking_lot's, which is fair). A search reads the facts through
//! one read guard for its whole traversal ([`FactsRead::filter`]), so a probe is a hash
//! lookup and a few comparisons, with no atomic operation; searches never block each other.
//! Writers (add, remove, a confidence change) hold the lock for microseconds, but wait for
//! the searches under way; meanwhile new searches wait behind them, so neither side starves.
//! Lock order: the facts before the index (a filtered search takes the index's lock under
//! this one; nothing takes this one under the index's).

mod terms;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::mem::size_of;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Error, Result};
use crate::hnsw::{Filter, IdHasher};
use terms::Terms;

/// The fields a filter can name, in the order of a triple.
pub const FIELDS: [&str; 3] = ["subject", "predicate", "object"];

/// What a live node carries: its term number in each field, and its confidence.
#[derive(Clone, Copy, Debug)]
struct Payload {
    confidence: f64,
    terms: [u32; 3],
}

#[derive(Debug, Default)]
struct Inner {
    nodes: HashMap<u64, Payload, BuildHasherDefault<IdHasher>>,
    fields: [Terms; 3],
}

impl Inner {
    fn remove(&mut self, id: u64) -> bool {
        let Some(gone) = self.nodes.remove(&id) else {
            return false;
        };
        let nodes = &self.nodes;
        for (f, terms) in self.fields.iter_mut().enumerate() {
            let t = gone.terms[f];
            terms.remove(t, |other| {
                nodes.get(&other).is_some_and(|p| p.terms[f] == t)
            });
        }
        true
    }

    /// The term numbers of a triple, `None` if some term is carried by no node.
    fn find(&self, triple: [&str; 3]) -> Option<[u32; 3]> {
        let [s, p, o] = triple;
        Some([
            self.fields[0].find(s)?,
            self.fields[1].find(p)?,
            self.fields[2].find(o)?,
        ])
    }
}

/// The live nodes' facts; see the module comment. `Send + Sync`: share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct FactIndex {
    inner: RwLock<Inner>,
}

impl FactIndex {
    pub fn new() -> FactIndex {
        FactIndex::default()
    }

    /// Read access; waits for a writer (and lets a waiting writer go first).
    pub fn read(&self) -> FactsRead<'_> {
        FactsRead(self.inner.read())
    }

    /// Read access if no writer holds the lock or waits for it at this instant.
    pub fn try_read(&self) -> Option<FactsRead<'_>> {
        self.inner.try_read().map(FactsRead)
    }

    /// Write access; waits for the readers under way.
    pub fn write(&self) -> FactsWrite<'_> {
        FactsWrite(self.inner.write())
    }

    /// Write access if nobody holds the lock at this instant.
    pub fn try_write(&self) -> Option<FactsWrite<'_>> {
        self.inner.try_write().map(FactsWrite)
    }
}

/// The facts under a read guard.
pub struct FactsRead<'a>(RwLockReadGuard<'a, Inner>);

/// The facts under the write guard.
pub struct FactsWrite<'a>(RwLockWriteGuard<'a, Inner>);

macro_rules! reads {
    () => {
        /// Live nodes.
        pub fn len(&self) -> usize {
            self.0.nodes.len()
        }

        pub fn is_empty(&self) -> bool {
            self.0.nodes.is_empty()
        }

        /// Whether a live node carries exactly this triple.
        pub fn contains(&self, triple: [&str; 3]) -> bool {
            let Some(want) = self.0.find(triple) else {
                return false;
            };
            // Walk the shortest of the three postings (a subject's few nodes, usually).
            let shortest = (0..3)
                .map(|f| self.0.fields[f].posting(want[f]))
                .min_by_key(|p| p.ids().len());
            shortest.is_some_and(|posting| {
                posting
                    .ids()
                    .iter()
                    .any(|id| self.0.nodes.get(id).is_some_and(|p| p.terms == want))
            })
        }

        /// The confidence of `id`, `None` if it is not a live node.
        pub fn confidence(&self, id: u64) -> Option<f64> {
            self.0.nodes.get(&id).map(|p| p.confidence)
        }

        /// `(id, confidence)` of every live node, in no particular order.
        pub fn confidences(&self) -> Vec<(u64, f64)> {
            self.0
                .nodes
                .iter()
                .map(|(&id, p)| (id, p.confidence))
                .collect()
        }

        /// Distinct terms of each field (subject, predicate, object) among the live nodes.
        pub fn term_counts(&self) -> [usize; 3] {
            [0, 1, 2].map(|f| self.0.fields[f].len())
        }

        /// Heap bytes held (allocated capacity included).
        pub fn memory_bytes(&self) -> usize {
            let nodes = self.0.nodes.capacity() * (size_of::<(u64, Payload)>() + 1);
            nodes + self.0.fields.iter().map(Terms::memory_bytes).sum::<usize>()
        }
    };
}

impl FactsRead<'_> {
    reads!();
}

impl FactsWrite<'_> {
    reads!();

    /// Record node `id` with `triple` and `confidence` (a node already there takes them:
    /// its confidence, and its triple if that differs).
    pub fn add(&mut self, id: u64, triple: [&str; 3], confidence: f64) -> Result<()> {
        check_confidence("confidence", confidence)?;
        let inner = &mut *self.0;
        if let Some(had) = inner.nodes.get(&id).map(|p| p.terms) {
            if inner.find(triple) == Some(had) {
                inner.nodes.insert(
                    id,
                    Payload {
                        confidence,
                        terms: had,
                    },
                );
                return Ok(());
            }
            inner.remove(id);
        }
        let mut terms = [0; 3];
        for (f, field) in inner.fields.iter_mut().enumerate() {
            terms[f] = field.intern(triple[f]);
            field.insert(terms[f], id);
        }
        inner.nodes.insert(id, Payload { confidence, terms });
        Ok(())
    }

    /// Forget node `id`; false if it was not there.
    pub fn remove(&mut self, id: u64) -> bool {
        self.0.remove(id)
    }

    /// Change the confidence of live node `id`; false (and nothing changed) if it is not
    /// there.
    pub fn set_confidence(&mut self, id: u64, confidence: f64) -> Result<bool> {
        check_confidence("confidence", confidence)?;
        Ok(match self.0.nodes.get_mut(&id) {
            Some(p) => {
                p.confidence = confidence;
                true
            }
            None => false,
        })
    }
}

fn check_confidence(name: &str, value: f64) -> Result<()> {
    if value.is_nan() {
        return Err(Error::invalid(format!("{name} must be a number, got NaN")));
    }
    Ok(())
}

/// A search filter over the facts: exact terms for any of the three fields, and a floor on
/// the confidence. It names terms by their text, so it stays right whatever is added or
/// removed between the searches that use it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FactQuery {
    terms: [Option<Box<str>>; 3],
    min_confidence: Option<f64>,
}

impl FactQuery {
    /// `terms`: the wanted subject, predicate and object (`None`: any).
    pub fn new(terms: [Option<&str>; 3], min_confidence: Option<f64>) -> Result<FactQuery> {
        if let Some(floor) = min_confidence {
            check_confidence("min_confidence", floor)?;
        }
        Ok(FactQuery {
            terms: terms.map(|t| t.map(Box::from)),
            min_confidence,
        })
    }

    /// The wanted term of field `f` (0: subject, 1: predicate, 2: object).
    pub fn term(&self, f: usize) -> Option<&str> {
        self.terms.get(f)?.as_deref()
    }

    pub fn min_confidence(&self) -> Option<f64> {
        self.min_confidence
    }

    /// Whether it allows every node (it names no term and no floor).
    pub fn is_unrestricted(&self) -> bool {
        self.terms.iter().all(Option::is_none) && self.min_confidence.is_none()
    }
}

impl<'a> FactsRead<'a> {
    /// `query` as a [`Filter`] over these facts, for as long as the guard is held.
    pub fn filter(self, query: &FactQuery) -> FactView<'a> {
        FactView::new(self.0, query)
    }

    /// Whether `query` allows `id` (what [`FactView::allows`] answers), without the
    /// preparation a view makes for a whole search: for a test of a few ids.
    pub fn allows(&self, query: &FactQuery, id: u64) -> bool {
        if query.is_unrestricted() {
            return true;
        }
        let Some(p) = self.0.nodes.get(&id) else {
            return false;
        };
        (0..3).all(|f| {
            query
                .term(f)
                .is_none_or(|want| self.0.fields[f].posting(p.terms[f]).term() == want)
        }) && query
            .min_confidence
            .is_none_or(|floor| p.confidence >= floor)
    }
}

/// Which ids a [`FactView`] lists for the index's "few ids: score them directly" path.
#[derive(Debug)]
enum Listed {
    /// No field named: the filter cannot list its ids cheaply.
    Unlisted,
    /// A term no live node carries: nothing is allowed.
    Nothing,
    /// One field named: its posting, lent as it is.
    Posting(usize, u32),
    /// Several fields named: the nodes allowed, gathered from the shortest posting.
    Gathered(Vec<u64>),
}

/// A [`FactQuery`] resolved against the facts under a read guard: a [`Filter`] whose
/// `allows` is one hash lookup and a few comparisons. Hold it only for a search (writers
/// wait for it).
pub struct FactView<'a> {
    facts: RwLockReadGuard<'a, Inner>,
    want: [Option<u32>; 3],
    floor: Option<f64>,
    listed: Listed,
}

impl<'a> FactView<'a> {
    fn new(facts: RwLockReadGuard<'a, Inner>, query: &FactQuery) -> FactView<'a> {
        let mut want = [None; 3];
        let mut unknown = false;
        for (f, term) in query.terms.iter().enumerate() {
            if let Some(term) = term {
                want[f] = facts.fields[f].find(term);
                unknown |= want[f].is_none();
            }
        }
        let mut view = FactView {
            facts,
            want,
            floor: query.min_confidence,
            listed: Listed::Unlisted,
        };
        let named: Vec<(usize, u32)> = (0..3).filter_map(|f| Some((f, want[f]?))).collect();
        view.listed = match named.as_slice() {
            _ if unknown => Listed::Nothing,
            [] => Listed::Unlisted,
            &[(f, t)] => Listed::Posting(f, t),
            several => {
                let shortest = several
                    .iter()
                    .map(|&(f, t)| view.facts.fields[f].posting(t))
                    .min_by_key(|p| p.ids().len());
                let ids = shortest.map_or(&[][..], |p| p.ids());
                Listed::Gathered(ids.iter().copied().filter(|&id| view.admits(id)).collect())
            }
        };
        view
    }

    #[inline]
    fn admits(&self, id: u64) -> bool {
        let Some(p) = self.facts.nodes.get(&id) else {
            return false;
        };
        (0..3).all(|f| self.want[f].is_none_or(|t| p.terms[f] == t))
            && self.floor.is_none_or(|floor| p.confidence >= floor)
    }
}

impl Filter for FactView<'_> {
    /// A filter that names nothing allows every id, live in the facts or not (it is no
    /// filter); otherwise the live nodes whose facts match.
    #[inline]
    fn allows(&self, id: u64) -> bool {
        match self.listed {
            Listed::Nothing => false,
            Listed::Unlisted if self.floor.is_none() => true,
            _ => self.admits(id),
        }
    }

    /// With one field named, its posting: every allowed id, and perhaps nodes below the
    /// floor or deleted a moment ago (the index asks `allows` of each). With several, the
    /// allowed ids exactly.
    fn ids(&self) -> Option<&[u64]> {
        match &self.listed {
            Listed::Unlisted => None,
            Listed::Nothing => Some(&[]),
            &Listed::Posting(f, t) => Some(self.facts.fields[f].posting(t).ids()),
            Listed::Gathered(ids) => Some(ids),
        }
    }
}
