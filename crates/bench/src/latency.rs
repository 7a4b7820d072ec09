//! Apply-to-Secret latency: single DatabricksTokens created one at a time, each timed from the
//! create call until its Secret holds a token.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::world::World;

pub async fn apply_to_secret(world: &World, samples: usize) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let name = format!("lat{i:03}");
        let started = Instant::now();
        world.create_token(&name).await?;
        let deadline = started + Duration::from_secs(60);
        loop {
            let secret = world.secrets().get_opt(&name).await?;
            if secret
                .and_then(|s| s.data)
                .is_some_and(|d| d.contains_key("token"))
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("{name}: no Secret with a token after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<Duration> = (1..=30).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(15));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(30));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
