//! Generation-tagged slab: connection storage whose tokens cannot be confused after reuse.
//!
//! A token is `slot | generation << 32 | tag << 56`. When a slot is freed its generation is
//! bumped, so an event or timer still carrying the old token finds a generation mismatch and
//! is ignored (`get_mut` returns `None`), never unwrapped. The 7-bit tag lets one reactor host
//! several slabs (a stressor and its built-in sink) and route a token without a lookup; tag 127
//! is never issued because the reserved tokens at the top of the space (waker, listeners,
//! role timers) have every bit set.

use mio::Token;

const SLOT_BITS: u32 = 32;
const GEN_BITS: u32 = 24;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;
const TAG_SHIFT: u32 = SLOT_BITS + GEN_BITS;
/// Largest tag a slab may carry (127 is reserved for the fixed tokens at the top).
pub const MAX_TAG: u8 = 126;

enum Slot<T> {
    Occupied { gen: u32, val: T },
    Vacant { gen: u32, next_free: u32 },
}

/// Fixed-capacity slab. `insert` fails instead of growing past `capacity`.
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    free_head: u32,
    len: usize,
    capacity: usize,
    tag: u8,
}

const NIL: u32 = u32::MAX;

#[allow(dead_code)]
impl<T> Slab<T> {
    /// `capacity` is the hard bound; `reserve` is how many slots to allocate up front.
    pub fn new(tag: u8, capacity: usize, reserve: usize) -> Slab<T> {
        assert!(tag <= MAX_TAG, "slab tag {tag} is reserved");
        let capacity = capacity.min(NIL as usize);
        Slab { slots: Vec::with_capacity(reserve.min(capacity)), free_head: NIL, len: 0, capacity, tag }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// Whether `token` was issued by a slab with this slab's tag (it may still be stale).
    pub fn owns(&self, token: Token) -> bool {
        tag_of(token) == Some(self.tag)
    }

    /// Stores `val` and returns its token, or gives `val` back when the slab is full.
    pub fn insert(&mut self, val: T) -> Result<Token, T> {
        if self.len >= self.capacity {
            return Err(val);
        }
        let (slot, gen) = if self.free_head != NIL {
            let slot = self.free_head;
            let gen = match self.slots[slot as usize] {
                Slot::Vacant { gen, next_free } => {
                    self.free_head = next_free;
                    gen
                }
                Slot::Occupied { .. } => unreachable!("free list points at an occupied slot"),
            };
            self.slots[slot as usize] = Slot::Occupied { gen, val };
            (slot, gen)
        } else {
            let slot = self.slots.len() as u32;
            self.slots.push(Slot::Occupied { gen: 0, val });
            (slot, 0)
        };
        self.len += 1;
        Ok(self.token(slot, gen))
    }

    fn token(&self, slot: u32, gen: u32) -> Token {
        Token(slot as usize | ((gen as u64 & GEN_MASK) << SLOT_BITS) as usize | ((self.tag as usize) << TAG_SHIFT))
    }

    fn split(&self, token: Token) -> Option<(usize, u32)> {
        if tag_of(token) != Some(self.tag) {
            return None;
        }
        let raw = token.0 as u64;
        Some(((raw & 0xFFFF_FFFF) as usize, ((raw >> SLOT_BITS) & GEN_MASK) as u32))
    }

    pub fn get(&self, token: Token) -> Option<&T> {
        let (slot, gen) = self.split(token)?;
        match self.slots.get(slot)? {
            Slot::Occupied { gen: g, val } if *g == gen => Some(val),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        let (slot, gen) = self.split(token)?;
        match self.slots.get_mut(slot)? {
            Slot::Occupied { gen: g, val } if *g == gen => Some(val),
            _ => None,
        }
    }

    /// Removes and returns the value; a stale or foreign token removes nothing.
    pub fn remove(&mut self, token: Token) -> Option<T> {
        let (slot, gen) = self.split(token)?;
        match self.slots.get(slot) {
            Some(Slot::Occupied { gen: g, .. }) if *g == gen => {}
            _ => return None,
        }
        let next_gen = (gen + 1) & GEN_MASK as u32;
        let old = std::mem::replace(&mut self.slots[slot], Slot::Vacant { gen: next_gen, next_free: self.free_head });
        self.free_head = slot as u32;
        self.len -= 1;
        match old {
            Slot::Occupied { val, .. } => Some(val),
            Slot::Vacant { .. } => None,
        }
    }

    /// Iterates over live entries with their current tokens.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Token, &mut T)> {
        let tag = self.tag as usize;
        self.slots.iter_mut().enumerate().filter_map(move |(slot, s)| match s {
            Slot::Occupied { gen, val } => {
                Some((Token(slot | ((*gen as u64 & GEN_MASK) << SLOT_BITS) as usize | (tag << TAG_SHIFT)), val))
            }
            Slot::Vacant { .. } => None,
        })
    }

    /// Tokens of all live entries (for shutdown sweeps).
    pub fn tokens(&mut self) -> Vec<Token> {
        self.iter_mut().map(|(t, _)| t).collect()
    }
}

/// The tag a slab token carries, or `None` for the reserved tokens at the top of the space.
pub fn tag_of(token: Token) -> Option<u8> {
    let tag = ((token.0 as u64) >> TAG_SHIFT) as u8 & 0x7F;
    (tag <= MAX_TAG).then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_tokens_are_ignored_after_reuse() {
        let mut slab = Slab::new(3, 4, 4);
        let a = slab.insert("a").unwrap();
        assert_eq!(slab.get(a), Some(&"a"));
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert("b").unwrap();
        assert_ne!(a, b, "a reused slot must carry a new generation");
        assert_eq!(slab.get(a), None, "stale token must not reach the new entry");
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn capacity_is_a_hard_bound() {
        let mut slab = Slab::new(0, 2, 0);
        slab.insert(1).unwrap();
        slab.insert(2).unwrap();
        assert_eq!(slab.insert(3), Err(3));
        assert!(slab.is_full());
    }

    #[test]
    fn tags_route_and_reserved_tokens_are_foreign() {
        let mut a: Slab<u8> = Slab::new(1, 8, 0);
        let b: Slab<u8> = Slab::new(2, 8, 0);
        let t = a.insert(7).unwrap();
        assert!(a.owns(t));
        assert!(!b.owns(t));
        assert_eq!(b.get(t), None);
        assert_eq!(tag_of(Token(usize::MAX)), None);
        assert_eq!(tag_of(Token(usize::MAX - 5)), None);
        assert_eq!(a.get(Token(usize::MAX)), None);
    }

    #[test]
    fn generations_wrap_without_panicking() {
        let mut slab = Slab::new(0, 1, 1);
        let mut last = slab.insert(0u32).unwrap();
        for i in 0..(1u32 << GEN_BITS) + 3 {
            slab.remove(last).unwrap();
            last = slab.insert(i).unwrap();
        }
        assert_eq!(slab.get(last), Some(&((1u32 << GEN_BITS) + 2)));
    }

    #[test]
    fn iter_mut_yields_current_tokens() {
        let mut slab = Slab::new(5, 8, 0);
        let a = slab.insert(1).unwrap();
        let b = slab.insert(2).unwrap();
        slab.remove(a);
        let toks: Vec<_> = slab.iter_mut().map(|(t, v)| (t, *v)).collect();
        assert_eq!(toks, vec![(b, 2)]);
    }
}
