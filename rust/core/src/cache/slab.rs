//! Entries stored in one `Vec`, threaded on intrusive doubly linked lists by `u32`
//! indices: no allocation per entry, and 64 bytes per entry for a 16-byte key and an
//! 8-byte value (`Option<Node>` costs nothing more: `Queue` has spare values for the
//! `None`). A removed entry's slot goes on a free list and is reused by the next insert,
//! so an index stays valid for the entry's whole life and the hash table that maps keys
//! to indices never needs re-pointing (which costs a second table probe per eviction).

use super::prefetch::prefetch;

pub(crate) const NIL: u32 = u32::MAX;

/// The list an entry is on. Plain LRU keeps everything on `Window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Queue {
    Window = 0,
    Probation = 1,
    Protected = 2,
}

/// Aligned to a cache line: for the binding's 16-byte keys and 8-byte values a node is
/// exactly 64 bytes, and aligned it takes one cache miss to read instead of two (an
/// unaligned `Vec` from the allocator puts most nodes across two lines).
#[repr(align(64))]
pub(crate) struct Node<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    pub(crate) hash: u64,
    /// Clock tick at which the entry expires; [`NEVER`](super::clock::NEVER) if never.
    pub(crate) expires: u64,
    /// Plain LRU: when the entry was last used, on a clock shared by all shards (the
    /// shard whose tail has the smallest stamp holds the global LRU entry).
    /// `lru-with-frequency`: the slab's [`Slab::links`] count when the entry was last
    /// put at the front of a list (see `Slab::new`).
    pub(crate) stamp: u64,
    prev: u32,
    next: u32,
    pub(crate) weight: u32,
    pub(crate) queue: Queue,
    /// `lru-with-frequency`: hits since the entry was written, counted here rather than
    /// in the sketch (see `Shard::get`), as of the sketch generation `freq_gen`.
    pub(crate) freq: u8,
    pub(crate) freq_gen: u16,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct List {
    head: u32,
    tail: u32,
    pub(crate) len: u32,
    /// Bumped whenever the tail entry, or the tail's stamp, may have changed: lets the
    /// global LRU republish a shard's oldest stamp only when needed, since reading the
    /// tail (the least recently used, so the coldest entry) is a cache miss.
    pub(crate) tail_version: u32,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
        tail_version: 0,
    };
}

pub(crate) struct Slab<K, V> {
    nodes: Vec<Option<Node<K, V>>>,
    /// Most slots ever needed (the shard's capacity, plus the entry written before an
    /// eviction makes room): the `Vec` doubles as entries arrive, but not past this.
    max_slots: usize,
    free: Vec<u32>,
    len: usize,
    lists: [List; 3],
    /// Entries put at the front of a list so far (wrapping).
    links: u64,
    /// Whether putting an entry at a list's front stamps it with `links`.
    stamp_links: bool,
}

impl<K, V> Slab<K, V> {
    /// With `stamp_links`, every entry put at the front of a list gets the count of
    /// such moves so far as its `stamp`; `links() - stamp - 1` then bounds how many
    /// entries went in front of it since, so an entry whose bound is small is known to
    /// be near its list's head without looking at the list. Nothing is allocated until
    /// the first insert.
    pub(crate) fn new(stamp_links: bool, max_slots: usize) -> Self {
        Slab {
            nodes: Vec::new(),
            max_slots,
            free: Vec::new(),
            len: 0,
            lists: [List::EMPTY; 3],
            links: 0,
            stamp_links,
        }
    }

    /// Entries put at the front of a list so far (wrapping).
    #[inline]
    pub(crate) fn links(&self) -> u64 {
        self.links
    }

    /// Entries held.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Slots, held or free: every index below this may be passed to [`Self::get`].
    #[inline]
    pub(crate) fn slots(&self) -> usize {
        self.nodes.len()
    }

    /// The entry in a slot, if the slot is held.
    #[inline]
    pub(crate) fn get(&self, idx: u32) -> Option<&Node<K, V>> {
        self.nodes[idx as usize].as_ref()
    }

    #[inline]
    pub(crate) fn list(&self, q: Queue) -> &List {
        &self.lists[q as usize]
    }

    /// A held entry (the caller got `idx` from a list or the table).
    #[inline]
    pub(crate) fn node(&self, idx: u32) -> &Node<K, V> {
        match &self.nodes[idx as usize] {
            Some(n) => n,
            None => unreachable!("slot {idx} is free"),
        }
    }

    #[inline]
    pub(crate) fn node_mut(&mut self, idx: u32) -> &mut Node<K, V> {
        match &mut self.nodes[idx as usize] {
            Some(n) => n,
            None => unreachable!("slot {idx} is free"),
        }
    }

    /// The least recently used entry of a list.
    #[inline]
    pub(crate) fn tail(&self, q: Queue) -> Option<u32> {
        let t = self.lists[q as usize].tail;
        (t != NIL).then_some(t)
    }

    /// Appends a new entry at the most-recent end of `queue`; returns its index.
    pub(crate) fn insert(
        &mut self,
        key: K,
        value: V,
        hash: u64,
        expires: u64,
        weight: u32,
        queue: Queue,
    ) -> u32 {
        let node = Some(Node {
            key,
            value,
            hash,
            expires,
            stamp: 0,
            prev: NIL,
            next: NIL,
            weight,
            queue,
            freq: 0,
            freq_gen: 0,
        });
        let idx = match self.free.pop() {
            Some(idx) => {
                self.nodes[idx as usize] = node;
                idx
            }
            None => {
                if self.nodes.len() == self.nodes.capacity() {
                    self.grow();
                }
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.len += 1;
        self.link_front(idx, queue);
        idx
    }

    /// Doubles the slots (from 4), but never past `max_slots` (as `Vec`'s own doubling
    /// would: a full cache would hold up to twice the memory it needs).
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let len = self.nodes.len();
        let extra = len.max(4).min(self.max_slots.saturating_sub(len)).max(1);
        self.nodes.reserve_exact(extra);
    }

    /// Bytes of the slots and the free list (not of what keys and values own).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Option<Node<K, V>>>()
            + self.free.capacity() * std::mem::size_of::<u32>()
    }

    #[inline(always)]
    fn link_front(&mut self, idx: u32, q: Queue) {
        let list = &mut self.lists[q as usize];
        let old_head = list.head;
        list.head = idx;
        if old_head == NIL {
            list.tail = idx;
            list.tail_version = list.tail_version.wrapping_add(1);
        }
        list.len += 1;
        let (links, stamp) = (self.links, self.stamp_links);
        self.links = links.wrapping_add(1);
        let n = self.node_mut(idx);
        if stamp {
            n.stamp = links;
        }
        n.prev = NIL;
        n.next = old_head;
        n.queue = q;
        if old_head != NIL {
            self.node_mut(old_head).prev = idx;
        }
    }

    #[inline(always)]
    fn unlink(&mut self, idx: u32) {
        let (prev, next, q) = {
            let n = self.node(idx);
            (n.prev, n.next, n.queue)
        };
        self.lists[q as usize].len -= 1;
        if prev == NIL {
            self.lists[q as usize].head = next;
        } else {
            self.node_mut(prev).next = next;
        }
        if next == NIL {
            self.lists[q as usize].tail = prev;
            self.lists[q as usize].tail_version =
                self.lists[q as usize].tail_version.wrapping_add(1);
            // The tail left, most often as an eviction, and the next eviction will
            // rewrite the new tail's predecessor: start loading it now (the new tail
            // itself was just written, so it is in cache already).
            if prev != NIL {
                let before = self.node(prev).prev;
                if before != NIL {
                    // The slot, not its contents: inspecting the `Option` would load it.
                    prefetch(&self.nodes[before as usize]);
                }
            }
        } else {
            self.node_mut(next).prev = prev;
        }
    }

    /// Moves an entry to the most-recent end of `q` (its own list or another). One
    /// out-of-line function: a read that hits calls it only when the entry moves.
    #[inline(never)]
    pub(crate) fn move_to_front(&mut self, idx: u32, q: Queue) {
        let n = self.node(idx);
        if n.queue == q && n.prev == NIL {
            if n.next == NIL {
                // Alone on its list: it stays the tail, but its stamp was just renewed.
                let list = &mut self.lists[q as usize];
                list.tail_version = list.tail_version.wrapping_add(1);
            }
            return;
        }
        self.unlink(idx);
        self.link_front(idx, q);
    }

    /// Removes an entry, returning its key and value; its slot is reused by a later
    /// insert. Inlined, so that only the key and value are copied out of the slot.
    #[inline(always)]
    pub(crate) fn remove(&mut self, idx: u32) -> (K, V) {
        self.unlink(idx);
        self.free.push(idx);
        self.len -= 1;
        match self.nodes[idx as usize].take() {
            Some(Node { key, value, .. }) => (key, value),
            None => unreachable!("slot {idx} is free"),
        }
    }

    /// Takes every entry out, leaving the slab empty (and its memory returned).
    pub(crate) fn take_all(&mut self) -> Vec<Option<Node<K, V>>> {
        for list in self.lists.iter_mut() {
            *list = List {
                tail_version: list.tail_version.wrapping_add(1),
                ..List::EMPTY
            };
        }
        self.free = Vec::new();
        self.len = 0;
        std::mem::take(&mut self.nodes)
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Node<K, V>> {
        self.nodes.iter().flatten()
    }

    /// Keys of one list from most to least recent (tests and invariant checks).
    #[cfg(test)]
    pub(crate) fn walk(&self, q: Queue) -> Vec<u32> {
        let mut out = Vec::new();
        let mut cur = self.lists[q as usize].head;
        while cur != NIL {
            out.push(cur);
            cur = self.node(cur).next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(s: &Slab<u32, ()>, q: Queue) -> Vec<u32> {
        s.walk(q).into_iter().map(|i| s.node(i).key).collect()
    }

    #[test]
    fn lists_stay_linked_through_moves_and_swap_removals() {
        let mut s: Slab<u32, ()> = Slab::new(false, 100);
        for k in 0..5 {
            s.insert(k, (), 0, 0, 1, Queue::Window);
        }
        assert_eq!(keys(&s, Queue::Window), [4, 3, 2, 1, 0]);
        s.move_to_front(0, Queue::Probation);
        s.move_to_front(2, Queue::Window);
        assert_eq!(keys(&s, Queue::Window), [2, 4, 3, 1]);
        assert_eq!(keys(&s, Queue::Probation), [0]);
        assert_eq!(s.remove(1).0, 1);
        assert_eq!(keys(&s, Queue::Window), [2, 4, 3]);
        assert!(s.get(1).is_none());
        assert_eq!(s.remove(s.tail(Queue::Window).unwrap()).0, 3);
        assert_eq!(keys(&s, Queue::Window), [2, 4]);
        assert_eq!(s.list(Queue::Window).len, 2);
        assert_eq!(s.len(), 3);
        // Freed slots are reused before the slab grows.
        let idx = s.insert(9, (), 0, 0, 1, Queue::Protected);
        assert!(idx == 1 || idx == 3, "{idx}");
        assert_eq!(s.slots(), 5);
        assert_eq!(keys(&s, Queue::Protected), [9]);
    }

    #[test]
    fn slots_double_up_to_the_most_ever_needed() {
        let mut s: Slab<u32, ()> = Slab::new(false, 10);
        assert_eq!(s.heap_bytes(), 0);
        let mut slots = vec![];
        for k in 0..10 {
            s.insert(k, (), 0, 0, 1, Queue::Window);
            slots.push(s.nodes.capacity());
        }
        assert_eq!(slots, [4, 4, 4, 4, 8, 8, 8, 8, 10, 10]);
    }
}
