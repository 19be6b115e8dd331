//! Rollout waves: which of a push's changed gateways go first. `--wave 2 --wave rest` is a canary
//! of two gateways, then the others; `--wave county --wave prefecture --wave rest` goes by level;
//! `--wave 10%` takes a tenth. Within a wave's choice gateways are taken in id order, so that
//! the same push picks the same canaries.

use std::collections::BTreeMap;

use control::model::Level;

#[derive(Clone, Debug, PartialEq)]
pub enum WaveSpec {
    /// This many gateways.
    Count(usize),
    /// This share of the push's changed gateways, rounded up.
    Percent(f64),
    /// The gateways at nodes of this level.
    Level(Level),
    /// Every gateway not in an earlier wave.
    Rest,
}

impl std::str::FromStr for WaveSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<WaveSpec, String> {
        let bad = || {
            format!(
                "wave {s:?}: a count (2), a share (10%), a level (central, province, prefecture, county) or rest"
            )
        };
        match s {
            "rest" => Ok(WaveSpec::Rest),
            "central" => Ok(WaveSpec::Level(Level::Central)),
            "province" => Ok(WaveSpec::Level(Level::Province)),
            "prefecture" => Ok(WaveSpec::Level(Level::Prefecture)),
            "county" => Ok(WaveSpec::Level(Level::County)),
            _ => {
                if let Some(p) = s.strip_suffix('%') {
                    let p: f64 = p.parse().map_err(|_| bad())?;
                    if !(p > 0.0 && p <= 100.0) {
                        return Err(bad());
                    }
                    Ok(WaveSpec::Percent(p))
                } else {
                    match s.parse::<usize>() {
                        Ok(n) if n > 0 => Ok(WaveSpec::Count(n)),
                        _ => Err(bad()),
                    }
                }
            }
        }
    }
}

/// Splits `changed` into waves; empty waves are left out, and gateways no spec took form a last
/// wave (said in the notes). No specs: one wave of all.
pub fn assign(
    specs: &[WaveSpec],
    changed: &[String],
    levels: &BTreeMap<String, Level>,
) -> Result<(Vec<Vec<String>>, Vec<String>), String> {
    let mut left: Vec<String> = changed.to_vec();
    left.sort();
    let total = left.len();
    let mut waves = Vec::new();
    let mut notes = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        if *spec == WaveSpec::Rest && i + 1 != specs.len() {
            return Err("--wave rest must be the last wave".into());
        }
        let take: Vec<String> = match spec {
            WaveSpec::Count(n) => left.iter().take(*n).cloned().collect(),
            WaveSpec::Percent(p) => {
                let n = ((total as f64) * p / 100.0).ceil() as usize;
                left.iter().take(n.max(1)).cloned().collect()
            }
            WaveSpec::Level(l) => left.iter().filter(|g| levels.get(*g) == Some(l)).cloned().collect(),
            WaveSpec::Rest => left.clone(),
        };
        left.retain(|g| !take.contains(g));
        if !take.is_empty() {
            waves.push(take);
        }
    }
    if !left.is_empty() {
        if !specs.is_empty() {
            notes.push(format!("{} gateway(s) no --wave took go in a last wave", left.len()));
        }
        waves.push(left);
    }
    Ok((waves, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("gw-{i:02}")).collect()
    }

    #[test]
    fn a_canary_then_the_rest_and_by_level() {
        let all = ids(5);
        let levels: BTreeMap<String, Level> = all
            .iter()
            .enumerate()
            .map(|(i, g)| (g.clone(), if i % 2 == 0 { Level::County } else { Level::Prefecture }))
            .collect();
        let specs: Vec<WaveSpec> = ["1", "rest"].iter().map(|s| s.parse().unwrap()).collect();
        let (w, notes) = assign(&specs, &all, &levels).unwrap();
        assert_eq!(w, vec![vec!["gw-00".to_string()], ids(5)[1..].to_vec()]);
        assert!(notes.is_empty());
        let specs: Vec<WaveSpec> = ["county"].iter().map(|s| s.parse().unwrap()).collect();
        let (w, notes) = assign(&specs, &all, &levels).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0], vec!["gw-00", "gw-02", "gw-04"]);
        assert_eq!(notes.len(), 1, "the gateways left over are said to form a last wave");
        let (w, _) = assign(&["40%".parse().unwrap()], &all, &levels).unwrap();
        assert_eq!(w[0].len(), 2);
        // Nothing changed: no wave at all.
        assert_eq!(assign(&specs, &[], &levels).unwrap().0, Vec::<Vec<String>>::new());
    }

    #[test]
    fn bad_waves_are_refused() {
        for s in ["0", "-1", "0%", "150%", "city", ""] {
            assert!(s.parse::<WaveSpec>().is_err(), "{s}");
        }
        assert!(assign(&[WaveSpec::Rest, WaveSpec::Count(1)], &ids(2), &BTreeMap::new()).is_err());
    }
}
