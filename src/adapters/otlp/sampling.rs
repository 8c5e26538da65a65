//! [`Sampling`]: which traces are recorded (`OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG`), decided the same way for the SDK's spans
//! (as its [`Sampler`]) and for the request spans, which never go through
//! the SDK ([`Sampling::samples`], on the request path).

use opentelemetry_sdk::trace::Sampler;

/// The decision for a trace with no sampled parent to follow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    /// Every trace.
    AlwaysOn,
    /// No trace.
    AlwaysOff,
    /// This fraction of traces (0 to 1), chosen by trace id, so every
    /// process sampling the same trace at the same ratio agrees.
    TraceIdRatio(f64),
}

/// A sampler of the OpenTelemetry specification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// How a trace without a parent is decided (and, when not
    /// `parent_based`, every trace).
    pub root: Root,
    /// Whether a span with a parent follows its parent's decision
    /// (`parentbased_*`).
    pub parent_based: bool,
}

impl Default for Sampling {
    /// `parentbased_always_on`, the specification's default.
    fn default() -> Self {
        Self {
            root: Root::AlwaysOn,
            parent_based: true,
        }
    }
}

impl Sampling {
    /// Whether a span of trace `trace_id` is sampled, given its parent's
    /// decision (`None` for a root span). The SDK's rule, written out so
    /// the request path builds no `Context` to ask it (tests check the two
    /// agree).
    pub fn samples(&self, trace_id: &[u8; 16], parent_sampled: Option<bool>) -> bool {
        match parent_sampled {
            Some(sampled) if self.parent_based => sampled,
            _ => match self.root {
                Root::AlwaysOn => true,
                Root::AlwaysOff => false,
                Root::TraceIdRatio(ratio) => by_trace_id(ratio, trace_id),
            },
        }
    }

    /// The SDK sampler making the same decisions.
    pub fn sdk(&self) -> Sampler {
        let root = match self.root {
            Root::AlwaysOn => Sampler::AlwaysOn,
            Root::AlwaysOff => Sampler::AlwaysOff,
            Root::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
        };
        if self.parent_based {
            Sampler::ParentBased(Box::new(root))
        } else {
            root
        }
    }
}

impl std::fmt::Display for Sampling {
    /// The `OTEL_TRACES_SAMPLER` name, with the ratio when there is one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.parent_based {
            f.write_str("parentbased_")?;
        }
        match self.root {
            Root::AlwaysOn => f.write_str("always_on"),
            Root::AlwaysOff => f.write_str("always_off"),
            Root::TraceIdRatio(ratio) => write!(f, "traceidratio({ratio})"),
        }
    }
}

/// `TraceIdRatioBased`: the low 63 bits of the trace id's last 8 bytes
/// against the ratio's share of 2^63, as `opentelemetry_sdk` computes it.
fn by_trace_id(ratio: f64, trace_id: &[u8; 16]) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    (u64::from_be_bytes(low) >> 1) < bound
}

#[cfg(test)]
mod tests {
    use opentelemetry::Context;
    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample as _};

    use super::*;

    fn every_sampler() -> Vec<Sampling> {
        let roots = [
            Root::AlwaysOn,
            Root::AlwaysOff,
            Root::TraceIdRatio(0.0),
            Root::TraceIdRatio(0.25),
            Root::TraceIdRatio(0.5),
            Root::TraceIdRatio(1.0),
        ];
        roots
            .iter()
            .flat_map(|&root| [true, false].map(|parent_based| Sampling { root, parent_based }))
            .collect()
    }

    fn trace_ids() -> Vec<[u8; 16]> {
        let mut ids = vec![[0u8; 16], [0xff; 16]];
        let mut x: u128 = 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c;
        for _ in 0..500 {
            // xorshift: spread over the whole range.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ids.push(x.to_be_bytes());
        }
        ids
    }

    #[test]
    fn request_spans_are_sampled_exactly_as_the_sdk_samples_spans() {
        for sampling in every_sampler() {
            let sdk = sampling.sdk();
            for trace_id in trace_ids() {
                for parent in [None, Some(true), Some(false)] {
                    let cx = parent.map(|sampled| {
                        let flags = if sampled {
                            TraceFlags::SAMPLED
                        } else {
                            TraceFlags::default()
                        };
                        Context::new().with_remote_span_context(SpanContext::new(
                            TraceId::from_bytes(trace_id),
                            SpanId::from(7),
                            flags,
                            true,
                            TraceState::default(),
                        ))
                    });
                    let expected = sdk
                        .should_sample(
                            cx.as_ref(),
                            TraceId::from_bytes(trace_id),
                            "GET /healthz",
                            &SpanKind::Server,
                            &[],
                            &[],
                        )
                        .decision
                        == SamplingDecision::RecordAndSample;
                    assert_eq!(
                        sampling.samples(&trace_id, parent),
                        expected,
                        "{sampling:?}, parent {parent:?}, trace {trace_id:02x?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_ratio_samples_about_its_share_of_traces() {
        let half = Sampling {
            root: Root::TraceIdRatio(0.5),
            parent_based: false,
        };
        let ids = trace_ids();
        let sampled = ids.iter().filter(|id| half.samples(id, None)).count();
        assert!(
            (200..=300).contains(&sampled),
            "{sampled} of {} sampled",
            ids.len()
        );
    }

    #[test]
    fn a_sampler_displays_as_its_variable_s_value() {
        assert_eq!(Sampling::default().to_string(), "parentbased_always_on");
        let ratio = Sampling {
            root: Root::TraceIdRatio(0.25),
            parent_based: false,
        };
        assert_eq!(ratio.to_string(), "traceidratio(0.25)");
    }

    #[test]
    fn the_default_follows_the_caller_and_samples_what_starts_here() {
        let sampling = Sampling::default();
        assert!(sampling.samples(&[1; 16], None));
        assert!(sampling.samples(&[1; 16], Some(true)));
        assert!(!sampling.samples(&[1; 16], Some(false)));
    }
}
