//! Any bytes as a plan: load, validate, compile every gateway, report conformance. The property
//! is that each step returns (a plan or located errors); a panic, hang or abort is a bug.
//! Seed corpus: `cp ../configs/demo/plan.yaml ../configs/examples/*.yaml fuzz/corpus/plan/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(lp) = control::load_str(text, std::path::Path::new("fuzz.yaml")) else { return };
    if control::validate(&lp).is_ok() {
        // A plan that checks must compile: anything else is a validation gap.
        control::compile::compile_all(&lp).expect("a valid plan compiles");
        let _ = control::conformance::report(&lp, true);
    }
});
