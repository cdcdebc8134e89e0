//! Random run names in MLflow's style: `<adjective>-<noun>-<number>`.

use rand::Rng;
use rand::seq::IndexedRandom;

const ADJECTIVES: &[&str] = &[
    "amber", "bold", "brisk", "calm", "clever", "crisp", "dapper", "eager", "fleet", "gentle", "glad", "grand", "hardy", "keen", "lively",
    "lucid", "mellow", "merry", "nimble", "noble", "placid", "proud", "quick", "quiet", "rare", "rustic", "serene", "sharp", "silent",
    "sleek", "sly", "smooth", "spry", "steady", "stoic", "sunny", "swift", "tidy", "vivid", "wise",
];
const NOUNS: &[&str] = &[
    "ant", "bass", "bear", "bee", "bird", "boar", "cat", "colt", "crab", "crane", "crow", "deer", "dove", "eel", "elk", "finch", "fox",
    "frog", "gnu", "goat", "hare", "hawk", "heron", "ibis", "jay", "koi", "lark", "lynx", "mole", "moth", "newt", "owl", "panda", "pike",
    "quail", "ram", "robin", "seal", "shrew", "snail", "swan", "toad", "trout", "vole", "wasp", "wolf", "wren",
];

pub(crate) fn random_run_name() -> String {
    let mut rng = rand::rng();
    let adjective = ADJECTIVES.choose(&mut rng).expect("non-empty list");
    let noun = NOUNS.choose(&mut rng).expect("non-empty list");
    format!("{adjective}-{noun}-{}", rng.random_range(0..1000))
}

#[cfg(test)]
mod tests {
    #[test]
    fn shape() {
        let name = super::random_run_name();
        assert_eq!(name.split('-').count(), 3, "{name}");
        assert!(plinth_core::validation::check_length("run name", 250, &name).is_ok());
    }
}
