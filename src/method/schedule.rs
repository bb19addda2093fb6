//! Pure schedule functions of the step: the learning rate (linear warm-up, then cosine decay
//! to zero) and the EMA decay `tau` (constant, or BYOL's cosine increase to 1).

use serde::{Deserialize, Serialize};

/// `base` ramped linearly over `warmup` steps from `base / warmup`, then a cosine from `base`
/// down to 0 at `total`.
pub fn warmup_cosine(step: u64, total: u64, warmup: u64, base: f64) -> f64 {
    if warmup > 0 && step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step.saturating_sub(warmup)) as f64 / span).min(1.0);
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TauSchedule {
    /// `tau` stays at its base value.
    #[default]
    Constant,
    /// BYOL: `tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2`, rising to 1 at the end.
    Cosine,
}

pub fn tau_at(schedule: TauSchedule, base: f64, step: u64, total: u64) -> f64 {
    match schedule {
        TauSchedule::Constant => base,
        TauSchedule::Cosine => {
            let progress = (step as f64 / total.max(1) as f64).min(1.0);
            1.0 - (1.0 - base) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        assert!((warmup_cosine(0, 100, 10, 1.0) - 0.1).abs() < 1e-12);
        assert!((warmup_cosine(9, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((warmup_cosine(10, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        // Half way through the decay: cos(pi/2) = 0, so half the base.
        assert!((warmup_cosine(55, 100, 10, 2.0) - 1.0).abs() < 1e-12);
        assert!(warmup_cosine(100, 100, 10, 1.0).abs() < 1e-12);
        assert!(
            warmup_cosine(500, 100, 10, 1.0).abs() < 1e-12,
            "stays at 0 past the end"
        );
        assert!(
            (warmup_cosine(0, 100, 0, 1.0) - 1.0).abs() < 1e-12,
            "no warm-up"
        );
    }

    #[test]
    fn tau_schedules() {
        assert_eq!(tau_at(TauSchedule::Constant, 0.99, 50, 100), 0.99);
        assert!((tau_at(TauSchedule::Cosine, 0.99, 0, 100) - 0.99).abs() < 1e-12);
        assert!((tau_at(TauSchedule::Cosine, 0.99, 50, 100) - 0.995).abs() < 1e-12);
        assert!((tau_at(TauSchedule::Cosine, 0.99, 100, 100) - 1.0).abs() < 1e-12);
    }
}
