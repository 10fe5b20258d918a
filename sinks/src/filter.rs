//! Per-sink event filters: which event kinds, webhook event names and instance ids a sink
//! receives. Set in config on each `sinks:` entry as `kinds`, `events` and `instances`; an
//! empty list means "all".

use crate::envelope::{Event, Kind};
use globset::{Glob, GlobMatcher};

/// A glob pattern was not valid.
#[derive(Debug, thiserror::Error)]
#[error("invalid pattern `{pattern}`: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The compiled filter of one sink.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    kinds: Vec<Kind>,
    events: Vec<GlobMatcher>,
    instances: Vec<GlobMatcher>,
}

fn compile(patterns: &[String]) -> Result<Vec<GlobMatcher>, PatternError> {
    patterns
        .iter()
        .map(|p| {
            Glob::new(p)
                .map(|g| g.compile_matcher())
                .map_err(|e| PatternError {
                    pattern: p.clone(),
                    reason: e.kind().to_string(),
                })
        })
        .collect()
}

impl Filter {
    /// Builds a filter. `events` and `instances` are globs (`*`, `?`, `[..]`; `/` is an
    /// ordinary character).
    ///
    /// # Errors
    /// [`PatternError`] for a malformed glob.
    pub fn new(
        kinds: &[Kind],
        events: &[String],
        instances: &[String],
    ) -> Result<Self, PatternError> {
        Ok(Self {
            kinds: kinds.to_vec(),
            events: compile(events)?,
            instances: compile(instances)?,
        })
    }

    /// Whether the sink receives some events of `kind` (its `kinds` list is empty or names it).
    pub fn takes_kind(&self, kind: Kind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }

    /// Whether the sink receives `event`:
    /// - its kind is listed (or no kinds are);
    /// - for webhooks, the event name matches one of `events` (or none are set); other kinds
    ///   ignore `events`;
    /// - its instance id matches one of `instances` (or none are set); with `instances` set,
    ///   events without an instance id are not selected.
    pub fn matches(&self, event: &Event) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&event.kind()) {
            return false;
        }
        if let Some(name) = event.payload.webhook_event() {
            if !self.events.is_empty() && !self.events.iter().any(|g| g.is_match(name)) {
                return false;
            }
        }
        if !self.instances.is_empty() {
            return event
                .payload
                .instance_id()
                .is_some_and(|id| self.instances.iter().any(|g| g.is_match(id)));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{api_log, webhook};

    fn f(kinds: &[Kind], events: &[&str], instances: &[&str]) -> Filter {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Filter::new(kinds, &s(events), &s(instances)).unwrap()
    }

    #[test]
    fn empty_filter_selects_everything() {
        assert!(f(&[], &[], &[]).matches(&webhook(1, "qr", Some("a"))));
        assert!(f(&[], &[], &[]).matches(&api_log(2, None)));
    }

    #[test]
    fn kinds_events_and_instance_globs_select() {
        let filter = f(&[Kind::Webhook], &["change_*", "ready"], &["WASP-*"]);
        assert!(filter.matches(&webhook(1, "change_state", Some("WASP-a"))));
        assert!(filter.matches(&webhook(1, "ready", Some("WASP-a/b"))));
        assert!(!filter.matches(&webhook(1, "qr", Some("WASP-a"))));
        assert!(!filter.matches(&webhook(1, "ready", Some("other"))));
        assert!(!filter.matches(&webhook(1, "ready", None)));
        assert!(!filter.matches(&api_log(1, Some("WASP-a"))));
    }

    #[test]
    fn event_names_do_not_filter_other_kinds() {
        let filter = f(&[], &["ready"], &[]);
        assert!(filter.matches(&api_log(1, None)));
        assert!(filter.matches(&webhook(1, "ready", None)));
        assert!(!filter.matches(&webhook(1, "message", None)));
    }

    #[test]
    fn malformed_glob_is_an_error() {
        let err = Filter::new(&[], &["[".into()], &[]).unwrap_err();
        assert_eq!(err.pattern, "[");
    }
}
