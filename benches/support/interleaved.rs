//! Interleaved measurement, for comparisons criterion's one-after-the-other
//! runs cannot carry on a machine whose speed changes for seconds at a
//! time: short samples of each contender in turn, round after round (the
//! first to go rotates), so all of them see the same phases. Each
//! contender's mean and median per iteration are written where
//! `scripts/bench.py` collects them (see [`Figures::write`]).

#![allow(dead_code)] // each bench uses its part

use std::time::Duration;

/// `rounds` rounds of one sample of each contender (a sample returns its
/// time per iteration); the contender that goes first rotates. Returns
/// every contender's samples, in round order.
pub fn rounds(
    rounds: usize,
    contenders: &mut [&mut dyn FnMut() -> Duration],
) -> Vec<Vec<Duration>> {
    let n = contenders.len();
    let mut samples = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        for k in 0..n {
            let c = (round + k) % n;
            samples[c].push(contenders[c]());
        }
    }
    samples
}

/// The median of the rounds' ratios `a[i] / b[i]`, and the middle half.
pub fn paired_ratio(a: &[Duration], b: &[Duration]) -> (f64, f64, f64) {
    let mut r: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    r.sort_by(f64::total_cmp);
    let n = r.len();
    (r[n / 2], r[n / 4], r[3 * n / 4])
}

/// One contender's samples, sorted, with their mean and median.
pub struct Figures {
    pub samples: Vec<Duration>,
    pub mean: Duration,
    pub median: Duration,
}

impl Figures {
    pub fn of(mut samples: Vec<Duration>) -> Figures {
        samples.sort();
        let mean = samples
            .iter()
            .sum::<Duration>()
            .div_f64(samples.len() as f64);
        let median = samples[samples.len() / 2];
        Figures {
            samples,
            mean,
            median,
        }
    }

    /// How many samples took longer than `than`.
    pub fn slower(&self, than: Duration) -> usize {
        self.samples.iter().filter(|&&d| d > than).count()
    }

    /// Writes `<target>/interleaved/<id, '/' as '_'>.json` (target: as
    /// criterion finds it, `CARGO_TARGET_DIR` or `target`), in the shape
    /// `scripts/bench.py` keeps criterion's point estimates: no slope (the
    /// samples are all the same size), the mean and the median, in ns per
    /// iteration (a sample being `iterations` of them), under the
    /// benchmark id `id`.
    pub fn write(&self, id: &str, throughput: u64, iterations: u64) {
        self.write_as(id, ("Elements", throughput), iterations);
    }

    /// [`Figures::write`] with criterion's kind of throughput named:
    /// `("Elements", n)` or `("Bytes", n)` per iteration.
    pub fn write_as(&self, id: &str, (kind, throughput): (&str, u64), iterations: u64) {
        let target = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
        let path = std::path::Path::new(&target)
            .join("interleaved")
            .join(format!("{}.json", id.replace('/', "_")));
        let ns = |d: Duration| d.as_secs_f64() * 1e9 / iterations as f64;
        let json = format!(
            "{{\"full_id\": \"{id}\", \"throughput\": {{\"{kind}\": {throughput}}}, \
             \"ns\": {{\"slope\": null, \"mean\": {:.3}, \"median\": {:.3}}}}}\n",
            ns(self.mean),
            ns(self.median),
        );
        let written = std::fs::create_dir_all(path.parent().unwrap())
            .and_then(|()| std::fs::write(&path, json));
        if let Err(e) = written {
            eprintln!("could not write {}: {e}", path.display());
        }
    }
}
