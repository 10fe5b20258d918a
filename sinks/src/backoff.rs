//! Waiting between attempts: a capped exponential [`Backoff`] and a sleep that gives way to
//! shutdown ([`sleep_or_shutdown`]). Used wherever something is restarted or reconnected: the
//! router's sink supervisor, the MQTT connection task and the forward sink's worker.

use std::time::Duration;

use tokio::sync::watch;

/// Capped exponential backoff: the first delay is `min`, each further one doubles, up to
/// `max`; [`Backoff::reset`] goes back to `min` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff from `min` doubling up to `max` (`max` below `min` is taken as `min`).
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The delay to wait now; the following one is doubled (capped at `max`).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// The delay [`Backoff::next_delay`] will return, without advancing.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Back to `min`, after a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Sleeps `d`, or less when `shutdown` turns true first. Returns whether shutdown was
/// requested (also when it was already requested before the call).
pub async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_to_the_minimum() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let got: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, vec![100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn shutdown_cuts_the_sleep_short() {
        let (tx, mut rx) = watch::channel(false);
        let sleeper =
            tokio::spawn(
                async move { sleep_or_shutdown(Duration::from_secs(3600), &mut rx).await },
            );
        tx.send_replace(true);
        assert!(sleeper.await.unwrap());
        let (_tx, mut rx) = watch::channel(false);
        assert!(!sleep_or_shutdown(Duration::from_millis(1), &mut rx).await);
    }
}
