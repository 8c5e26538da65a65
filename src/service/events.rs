//! `LiveEvents`: the fan-out behind `GET /api/events` (CONTRACT 6, v2).
//! Events published here reach this instance's subscribers at once, and the
//! other instances through the [`EventRelay`] when there is one (Dragonfly
//! pub/sub); events relayed from them come in through
//! [`LiveEvents::deliver_from_fleet`].
//!
//! Every subscriber reads from one bounded ring ([`SUBSCRIBER_BUFFER`]
//! events): a subscriber that falls further behind is told how many it
//! missed instead of holding memory for them.

use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::{broadcast, watch};

use crate::ports::{EventRelay, LiveEvent, LiveEventKind};

/// Events a subscriber may fall behind by before it misses some.
pub const SUBSCRIBER_BUFFER: usize = 64;

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The next event.
    Event(Arc<LiveEvent>),
    /// This many events were dropped for this subscriber: it was too slow.
    Missed(u64),
}

/// The live events of this instance. Cloning is cheap and shares the fan-out.
#[derive(Clone)]
pub struct LiveEvents {
    sender: broadcast::Sender<Arc<LiveEvent>>,
    relay: Option<Arc<dyn EventRelay>>,
    /// Set when the instance stops: every subscription ends, so open
    /// streams do not hold the shutdown up (clients reconnect elsewhere).
    closed: Arc<watch::Sender<bool>>,
}

impl Default for LiveEvents {
    fn default() -> Self {
        Self::local_only()
    }
}

impl LiveEvents {
    /// Events for this instance's subscribers only (memory-only mode).
    pub fn local_only() -> Self {
        let (sender, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        Self {
            sender,
            relay: None,
            closed: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Events for this instance's subscribers and, through `relay`, the
    /// other instances'.
    pub fn with_relay(relay: Arc<dyn EventRelay>) -> Self {
        Self {
            relay: Some(relay),
            ..Self::local_only()
        }
    }

    /// Publishes `data` (JSON) as a `kind` event, here and on the fleet.
    /// Never waits: the relay runs in the background and a failure is
    /// logged (other instances' dashboards then fall back to polling).
    pub fn publish(&self, kind: LiveEventKind, data: String) {
        let event = Arc::new(LiveEvent { kind, data });
        // No subscriber is not an error.
        let _ = self.sender.send(Arc::clone(&event));
        if let Some(relay) = &self.relay {
            let relay = Arc::clone(relay);
            tokio::spawn(async move {
                if let Err(error) = relay.publish(&event).await {
                    tracing::warn!(%error, event = event.kind.as_str(), "a live event did not reach the other instances");
                }
            });
        }
    }

    /// Hands an event another instance published to this one's subscribers.
    pub fn deliver_from_fleet(&self, event: LiveEvent) {
        let _ = self.sender.send(Arc::new(event));
    }

    /// Subscribers right now.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }

    /// Ends every subscription, now and to come: the instance is stopping.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Every event published from now on, until [`Self::close`].
    pub fn subscribe(&self) -> BoxStream<'static, Delivery> {
        let receiver = self.sender.subscribe();
        let closed = self.closed.subscribe();
        stream::unfold(
            (receiver, closed),
            |(mut receiver, mut closed)| async move {
                let received = tokio::select! {
                    biased;
                    _ = closed.wait_for(|closed| *closed) => return None,
                    received = receiver.recv() => received,
                };
                match received {
                    Ok(event) => Some((Delivery::Event(event), (receiver, closed))),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        Some((Delivery::Missed(missed), (receiver, closed)))
                    }
                    Err(broadcast::error::RecvError::Closed) => None,
                }
            },
        )
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_subscriber_gets_events_in_order_and_a_slow_one_misses_some() {
        let events = LiveEvents::local_only();
        let mut fast = events.subscribe();
        let mut slow = events.subscribe();
        events.publish(LiveEventKind::Deploy, "1".to_owned());
        let Some(Delivery::Event(first)) = fast.next().await else {
            panic!("no event");
        };
        assert_eq!(first.data, "1");
        for n in 0..SUBSCRIBER_BUFFER + 10 {
            events.publish(LiveEventKind::Summary, n.to_string());
        }
        assert!(matches!(slow.next().await, Some(Delivery::Missed(_))));
    }

    #[tokio::test]
    async fn closing_ends_every_subscription() {
        let events = LiveEvents::local_only();
        let mut before = events.subscribe();
        events.close();
        assert!(before.next().await.is_none());
        assert!(events.subscribe().next().await.is_none());
    }
}
