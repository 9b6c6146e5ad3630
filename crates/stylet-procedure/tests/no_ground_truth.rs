//! The driver never sees ground truth: the procedure crate does not depend on the simulation
//! (`cargo tree` over its normal dependencies).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[test]
fn the_procedure_crate_does_not_depend_on_the_simulated_world() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = std::process::Command::new(cargo)
        .args(["tree", "--offline", "-p", "stylet-procedure", "-e", "normal", "--prefix", "none"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tree = String::from_utf8_lossy(&o.stdout);
    assert!(tree.lines().any(|l| l.starts_with("stylet-safety")), "{tree}");
    assert!(!tree.lines().any(|l| l.starts_with("stylet-sim")), "the driver reaches the simulation: {tree}");
}
