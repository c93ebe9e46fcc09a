//! The learning-rate schedule: an optional linear warm-up over the first iterations, then a step
//! decay at given epochs or every so many iterations, or a cosine decay. This covers the
//! schedules people reproduce: the official HRNet one (lr 1e-3, x0.1 at epochs 170 and 200 of
//! 210, no warm-up), MMPose's (a 500-iteration linear warm-up from 0.001 x lr, then the same
//! steps), Caffe's `lr_policy: "step"` (`SGDSolver::GetLearningRate`: `base_lr * gamma ^
//! floor(iter / stepsize)`), which CMU's OpenPose solver uses, and TensorFlow's
//! `tf.train.cosine_decay(lr, step, decay_steps, alpha=0)`, which tf-pose-estimation's
//! `train.py` uses for the MobileNetV2 OpenPose.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Base learning rate.
    pub lr: f64,
    /// Epochs (0-based, counted from the start of training) at which the rate is multiplied by
    /// `gamma`.
    #[serde(default)]
    pub milestones: Vec<usize>,
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// Caffe's `stepsize`: multiply by `gamma` every this many iterations (counted from the
    /// start of training); 0: not used. Exclusive with `milestones`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub step_iters: usize,
    /// TensorFlow's `cosine_decay` with `alpha = 0`: `lr * (1 + cos(pi * min(iter, T) / T)) / 2`
    /// with `T` this many iterations (counted from the start of training), 0 after `T`; 0: not
    /// used. Exclusive with `milestones` and `step_iters`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cosine_iters: usize,
    /// Length of the linear warm-up in iterations (0: none).
    #[serde(default)]
    pub warmup_iters: usize,
    /// The warm-up starts at `warmup_ratio * lr` (MMPose's `start_factor`).
    #[serde(default = "default_warmup_ratio")]
    pub warmup_ratio: f64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn default_gamma() -> f64 {
    0.1
}

fn default_warmup_ratio() -> f64 {
    0.001
}

impl ScheduleConfig {
    /// The official HRNet schedule.
    pub fn hrnet_official() -> Self {
        ScheduleConfig {
            lr: 1e-3,
            milestones: vec![170, 200],
            gamma: 0.1,
            step_iters: 0,
            cosine_iters: 0,
            warmup_iters: 0,
            warmup_ratio: 0.001,
        }
    }

    /// MMPose's top-down schedule.
    pub fn mmpose() -> Self {
        ScheduleConfig {
            lr: 1.5e-3,
            milestones: vec![170, 200],
            gamma: 0.1,
            step_iters: 0,
            cosine_iters: 0,
            warmup_iters: 500,
            warmup_ratio: 0.001,
        }
    }

    /// The rate for the iteration `iter` (counted from the start of training) of epoch `epoch`.
    /// A pure function of its arguments, so that a resumed run continues the same curve.
    pub fn lr_at(&self, epoch: usize, iter: usize) -> f64 {
        let mut lr = if self.cosine_iters > 0 {
            let t = iter.min(self.cosine_iters) as f64 / self.cosine_iters as f64;
            self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        } else {
            let decays = iter
                .checked_div(self.step_iters)
                .unwrap_or_else(|| self.milestones.iter().filter(|&&m| epoch >= m).count());
            self.lr * self.gamma.powi(decays as i32)
        };
        if iter < self.warmup_iters {
            let t = iter as f64 / self.warmup_iters as f64;
            lr *= self.warmup_ratio + (1.0 - self.warmup_ratio) * t;
        }
        lr
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!(
                "schedule.lr must be a positive number, got {}",
                self.lr
            ));
        }
        if !(self.gamma.is_finite() && self.gamma > 0.0) {
            return Err(format!(
                "schedule.gamma must be a positive number, got {}",
                self.gamma
            ));
        }
        if self.milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "schedule.milestones must increase, got {:?}",
                self.milestones
            ));
        }
        if self.step_iters > 0 && !self.milestones.is_empty() {
            return Err(format!(
                "schedule: give milestones (epochs) or step_iters (iterations), not both; got \
                 {:?} and {}",
                self.milestones, self.step_iters
            ));
        }
        if self.cosine_iters > 0 && (self.step_iters > 0 || !self.milestones.is_empty()) {
            return Err(format!(
                "schedule: cosine_iters decays the rate on its own; give no milestones or \
                 step_iters with it, got {:?} and {}",
                self.milestones, self.step_iters
            ));
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return Err(format!(
                "schedule.warmup_ratio must be in [0, 1], got {}",
                self.warmup_ratio
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_hrnet_steps() {
        let s = ScheduleConfig::hrnet_official();
        assert_eq!(s.lr_at(0, 0), 1e-3);
        assert_eq!(s.lr_at(169, 99_999), 1e-3);
        assert!((s.lr_at(170, 0) - 1e-4).abs() < 1e-15);
        assert!((s.lr_at(209, 0) - 1e-5).abs() < 1e-15);
    }

    #[test]
    fn mmpose_warmup_is_linear_from_start_factor() {
        let s = ScheduleConfig::mmpose();
        assert!((s.lr_at(0, 0) - 1.5e-6).abs() < 1e-15);
        let mid = s.lr_at(0, 250);
        assert!((mid - 1.5e-3 * (0.001 + 0.999 * 0.5)).abs() < 1e-12);
        assert_eq!(s.lr_at(0, 500), 1.5e-3);
        assert_eq!(s.lr_at(3, 10_000), 1.5e-3);
    }

    /// CMU's solver: base_lr 4e-5, gamma 0.333, stepsize 136106 (Caffe's `floor(iter /
    /// stepsize)`, so the first drop is at iteration 136106 itself).
    #[test]
    fn caffe_step_policy_counts_iterations() {
        let s = ScheduleConfig {
            lr: 4e-5,
            milestones: vec![],
            gamma: 0.333,
            step_iters: 136_106,
            cosine_iters: 0,
            warmup_iters: 0,
            warmup_ratio: 0.001,
        };
        s.validate().unwrap();
        assert_eq!(s.lr_at(0, 0), 4e-5);
        assert_eq!(s.lr_at(20, 136_105), 4e-5);
        assert!((s.lr_at(20, 136_106) - 4e-5 * 0.333).abs() < 1e-18);
        assert!((s.lr_at(49, 599_999) - 4e-5 * 0.333f64.powi(4)).abs() < 1e-18);
        let both = ScheduleConfig {
            milestones: vec![10],
            ..s
        };
        assert!(both.validate().unwrap_err().contains("not both"));
    }

    /// tf-pose-estimation's MobileNetV2 run: `tf.train.cosine_decay(1e-3, global_step, 600 *
    /// (121745 // 64), alpha=0.0)`, evaluated at the step before each update.
    #[test]
    fn cosine_decay_matches_tensorflow() {
        let t = 600 * (121_745 / 64);
        let s = ScheduleConfig {
            lr: 1e-3,
            milestones: vec![],
            gamma: 0.1,
            step_iters: 0,
            cosine_iters: t,
            warmup_iters: 0,
            warmup_ratio: 0.001,
        };
        s.validate().unwrap();
        assert_eq!(s.lr_at(0, 0), 1e-3);
        assert!((s.lr_at(300, t / 2) - 5e-4).abs() < 1e-15);
        assert!((s.lr_at(150, t / 4) - 1e-3 * (2.0 + 2f64.sqrt()) / 4.0).abs() < 1e-15);
        assert!(s.lr_at(599, t - 1) > 0.0 && s.lr_at(599, t - 1) < 1e-14);
        assert_eq!(s.lr_at(600, t), 0.0);
        assert_eq!(s.lr_at(700, t + 5_000), 0.0);
        // A warm-up scales the curve's start as it does a step schedule's.
        let warm = ScheduleConfig {
            warmup_iters: 100,
            ..s.clone()
        };
        assert!((warm.lr_at(0, 50) - s.lr_at(0, 50) * (0.001 + 0.999 * 0.5)).abs() < 1e-18);
        let both = ScheduleConfig {
            milestones: vec![400],
            ..s.clone()
        };
        assert!(both.validate().unwrap_err().contains("cosine_iters"));
        let both = ScheduleConfig {
            step_iters: 10,
            ..s
        };
        assert!(both.validate().unwrap_err().contains("cosine_iters"));
    }

    #[test]
    fn rejects_bad_values() {
        let mut s = ScheduleConfig::hrnet_official();
        s.milestones = vec![200, 170];
        assert!(s.validate().is_err());
        s = ScheduleConfig::hrnet_official();
        s.lr = f64::NAN;
        assert!(s.validate().is_err());
    }
}
