use std::time::Duration;

/// Exponential backoff with jitter, for retrying a store that is down.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff { first, max, next: first }
    }

    /// The delay before the next attempt: doubles each time up to the maximum, with up
    /// to 20% random jitter so that many agents do not retry in step.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = base.mul_f64(rand::random::<f64>() * 0.2);
        base + jitter
    }

    /// Starts again from the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<_> = (0..4).map(|_| b.next_delay()).collect();
        let within =
            |d: Duration, base: u64| d >= Duration::from_millis(base) && d <= Duration::from_millis(base * 6 / 5);
        assert!(within(delays[0], 100), "{delays:?}");
        assert!(within(delays[1], 200), "{delays:?}");
        assert!(within(delays[2], 350), "{delays:?}");
        assert!(within(delays[3], 350), "{delays:?}");
        b.reset();
        assert!(within(b.next_delay(), 100));
    }
}
