//! Entries stored densely in one `Vec`, threaded on intrusive doubly linked lists by
//! `u32` indices: no allocation per entry, and 64 bytes per entry for a 16-byte key
//! and an 8-byte value. A removal moves the last entry into the hole
//! (`swap_remove`), so the `Vec` stays dense and needs no free list; the caller then
//! re-points its hash table at the moved entry.

pub(crate) const NIL: u32 = u32::MAX;

/// The list an entry is on. Plain LRU keeps everything on `Window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Queue {
    Window = 0,
    Probation = 1,
    Protected = 2,
}

pub(crate) struct Node<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    pub(crate) hash: u64,
    /// Clock tick at which the entry expires; [`NEVER`](super::clock::NEVER) if never.
    pub(crate) expires: u64,
    /// When the entry was last used, on a clock shared by all shards (plain LRU only:
    /// the shard whose tail has the smallest stamp holds the global LRU entry).
    pub(crate) stamp: u64,
    prev: u32,
    next: u32,
    pub(crate) weight: u32,
    pub(crate) queue: Queue,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct List {
    head: u32,
    tail: u32,
    pub(crate) len: u32,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

pub(crate) struct Slab<K, V> {
    nodes: Vec<Node<K, V>>,
    lists: [List; 3],
}

impl<K, V> Slab<K, V> {
    pub(crate) fn new() -> Self {
        Slab {
            nodes: Vec::new(),
            lists: [List::EMPTY; 3],
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    #[inline]
    pub(crate) fn list(&self, q: Queue) -> &List {
        &self.lists[q as usize]
    }

    #[inline]
    pub(crate) fn node(&self, idx: u32) -> &Node<K, V> {
        &self.nodes[idx as usize]
    }

    #[inline]
    pub(crate) fn node_mut(&mut self, idx: u32) -> &mut Node<K, V> {
        &mut self.nodes[idx as usize]
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
        let idx = self.nodes.len() as u32;
        self.nodes.push(Node {
            key,
            value,
            hash,
            expires,
            stamp: 0,
            prev: NIL,
            next: NIL,
            weight,
            queue,
        });
        self.link_front(idx, queue);
        idx
    }

    fn link_front(&mut self, idx: u32, q: Queue) {
        let list = &mut self.lists[q as usize];
        let old_head = list.head;
        list.head = idx;
        if old_head == NIL {
            list.tail = idx;
        }
        list.len += 1;
        let n = &mut self.nodes[idx as usize];
        n.prev = NIL;
        n.next = old_head;
        n.queue = q;
        if old_head != NIL {
            self.nodes[old_head as usize].prev = idx;
        }
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next, q) = {
            let n = &self.nodes[idx as usize];
            (n.prev, n.next, n.queue)
        };
        let list = &mut self.lists[q as usize];
        list.len -= 1;
        if prev == NIL {
            list.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            list.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
    }

    /// Moves an entry to the most-recent end of `q` (its own list or another).
    #[inline]
    pub(crate) fn move_to_front(&mut self, idx: u32, q: Queue) {
        let n = &self.nodes[idx as usize];
        if n.queue == q && n.prev == NIL {
            return;
        }
        self.unlink(idx);
        self.link_front(idx, q);
    }

    /// Removes an entry. Returns it and, if another entry was moved into its index, the
    /// index that entry had before (the caller's table still points there).
    pub(crate) fn remove(&mut self, idx: u32) -> (Node<K, V>, Option<u32>) {
        self.unlink(idx);
        let last = (self.nodes.len() - 1) as u32;
        if idx == last {
            let node = self.nodes.pop().expect("remove from an empty slab");
            return (node, None);
        }
        let (prev, next, q) = {
            let n = &self.nodes[last as usize];
            (n.prev, n.next, n.queue)
        };
        let list = &mut self.lists[q as usize];
        if prev == NIL {
            list.head = idx;
        } else {
            self.nodes[prev as usize].next = idx;
        }
        if next == NIL {
            list.tail = idx;
        } else {
            self.nodes[next as usize].prev = idx;
        }
        (self.nodes.swap_remove(idx as usize), Some(last))
    }

    /// Takes every entry out, leaving the slab empty (and its memory returned).
    pub(crate) fn take_all(&mut self) -> Vec<Node<K, V>> {
        self.lists = [List::EMPTY; 3];
        std::mem::take(&mut self.nodes)
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Node<K, V>> {
        self.nodes.iter()
    }

    /// Keys of one list from most to least recent (tests and invariant checks).
    #[cfg(test)]
    pub(crate) fn walk(&self, q: Queue) -> Vec<u32> {
        let mut out = Vec::new();
        let mut cur = self.lists[q as usize].head;
        while cur != NIL {
            out.push(cur);
            cur = self.nodes[cur as usize].next;
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
        let mut s: Slab<u32, ()> = Slab::new();
        for k in 0..5 {
            s.insert(k, (), 0, 0, 1, Queue::Window);
        }
        assert_eq!(keys(&s, Queue::Window), [4, 3, 2, 1, 0]);
        s.move_to_front(0, Queue::Probation);
        s.move_to_front(2, Queue::Window);
        assert_eq!(keys(&s, Queue::Window), [2, 4, 3, 1]);
        assert_eq!(keys(&s, Queue::Probation), [0]);
        // Removing index 1 moves the last node (key 4) into index 1.
        let (gone, moved) = s.remove(1);
        assert_eq!((gone.key, moved), (1, Some(4)));
        assert_eq!(keys(&s, Queue::Window), [2, 4, 3]);
        assert_eq!(s.node(1).key, 4);
        let (gone, moved) = s.remove(s.tail(Queue::Window).unwrap());
        assert_eq!((gone.key, moved), (3, None));
        assert_eq!(keys(&s, Queue::Window), [2, 4]);
        assert_eq!(s.list(Queue::Window).len, 2);
        assert_eq!(s.len(), 3);
    }
}
