//! Broken plans never panic: the example plans, mutated at random (bytes changed to the
//! characters YAML cares about, lines dropped, doubled or swapped, the text cut short), either
//! load, validate and compile, or come back as located errors. The libFuzzer target in
//! `control/fuzz` explores the same property without a time limit.

use std::path::Path;

use proptest::prelude::*;

const PLANS: [&str; 3] = [
    include_str!("../../configs/demo/plan.yaml"),
    include_str!("../../configs/examples/conversions.yaml"),
    include_str!("../../configs/examples/province-tree.yaml"),
];

/// What a plan can be turned into; the property is only that this returns.
fn exercise(text: &str) {
    match control::load_str(text, Path::new("fuzzed.yaml")) {
        Err(d) => assert!(!d.0.is_empty(), "an error result carries at least one diagnostic"),
        Ok(lp) => match control::validate(&lp) {
            Err(d) => {
                assert!(!d.0.is_empty());
                for e in &d.0 {
                    assert!(!e.message.is_empty());
                }
            }
            Ok(()) => {
                control::compile::compile_all(&lp).expect("a valid plan compiles");
                let _ = control::conformance::report(&lp, true);
            }
        },
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Byte(usize, u8),
    DropLine(usize),
    DoubleLine(usize),
    SwapLines(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let special = prop::sample::select(b":-[]{},#&*!|>'\"% \n\t/.0123456789abfz".to_vec());
    prop_oneof![
        (any::<usize>(), special).prop_map(|(i, b)| Mutation::Byte(i, b)),
        any::<usize>().prop_map(Mutation::DropLine),
        any::<usize>().prop_map(Mutation::DoubleLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    if text.is_empty() {
        return String::new();
    }
    let mut lines: Vec<&str> = text.lines().collect();
    let n = lines.len().max(1);
    if lines.is_empty() {
        lines.push("");
    }
    match *m {
        Mutation::Byte(i, b) => {
            let mut bytes = text.as_bytes().to_vec();
            let i = i % bytes.len();
            bytes[i] = b;
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Mutation::DropLine(i) => {
            lines.remove(i % n);
        }
        Mutation::DoubleLine(i) => lines.insert(i % n, lines[i % n]),
        Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
        Mutation::Truncate(i) => {
            let mut end = i % text.len();
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            return text[..end].to_string();
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_plans_give_errors_not_panics(
        which in 0..PLANS.len(),
        ms in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut text = PLANS[which].to_string();
        for m in &ms {
            text = apply(&text, m);
        }
        exercise(&text);
    }

    #[test]
    fn arbitrary_text_gives_errors_not_panics(text in "\\PC{0,200}") {
        exercise(&text);
    }
}
