//! Savitzky-Golay smoothing against scipy: coefficients and filtered trajectories recorded by
//! tools/fixtures/make_savgol_fixture.py (`scipy.signal.savgol_coeffs` / `savgol_filter`,
//! mode 'interp').

use posekit_core::tracking::smoothing::{savgol_coefficients, savgol_filter, SavgolParams};

#[test]
fn coefficients_and_filtered_tracks_match_scipy() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tracking/savgol.json"
    );
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    for case in cases {
        let window = case["window"].as_u64().unwrap() as usize;
        let polyorder = case["polyorder"].as_u64().unwrap() as usize;
        for (pos, want) in case["coefficients"].as_array().unwrap().iter().enumerate() {
            let got = savgol_coefficients(window, polyorder, pos);
            for (g, w) in got.iter().zip(floats(want)) {
                assert!(
                    (g - w).abs() < 1e-9,
                    "window {window} order {polyorder} pos {pos}"
                );
            }
        }
        let y = floats(&case["y"]);
        let got = savgol_filter(&y, &SavgolParams { window, polyorder }).unwrap();
        let want = floats(&case["filtered"]);
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < 1e-7,
                "window {window} order {polyorder} sample {i}: {g} vs {w}"
            );
        }
    }
}
