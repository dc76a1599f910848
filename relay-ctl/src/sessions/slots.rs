//! Kernel per-leg stats slots: indices into the per-CPU stats array, handed out by the
//! controller so XDP never inserts into a map. Slot 0 is never used, so a zeroed value
//! (a shared port's marker entry) can never alias a real leg.
pub struct Slots {
    free: Vec<u32>,
    next: u32,
    max: u32,
}

impl Slots {
    pub fn new(max: u32) -> Slots {
        Slots {
            free: vec![],
            next: 1,
            max,
        }
    }

    pub fn capacity(&self) -> u32 {
        self.max.saturating_sub(1)
    }

    pub fn alloc(&mut self) -> Option<u32> {
        if let Some(s) = self.free.pop() {
            return Some(s);
        }
        if self.next < self.max {
            self.next += 1;
            return Some(self.next - 1);
        }
        None
    }

    /// Mark `slot` used (a restarted daemon re-adopting its sessions). False if it is out of
    /// range or already used.
    pub fn take(&mut self, slot: u32) -> bool {
        if slot == 0 || slot >= self.max {
            return false;
        }
        if slot >= self.next {
            self.free.extend(self.next..slot);
            self.next = slot + 1;
            return true;
        }
        match self.free.iter().position(|&s| s == slot) {
            Some(i) => {
                self.free.swap_remove(i);
                true
            }
            None => false,
        }
    }

    pub fn free(&mut self, slot: u32) {
        if slot != 0 && slot < self.next && !self.free.contains(&slot) {
            self.free.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_take_free() {
        let mut s = Slots::new(5);
        assert_eq!(s.capacity(), 4);
        assert!(s.take(3));
        assert!(!s.take(3), "taken twice");
        assert!(!s.take(0) && !s.take(5));
        let mut got: Vec<u32> = std::iter::from_fn(|| s.alloc()).collect();
        got.sort();
        assert_eq!(got, vec![1, 2, 4]);
        s.free(2);
        s.free(2);
        assert_eq!(s.alloc(), Some(2));
        assert_eq!(s.alloc(), None);
    }
}
