//! Decompression bombs through the CLI (issue 7, item 4): a `.pth` whose storage inflates to
//! 200 MB for a tensor the model cannot hold, and a `.mat` with a deflated 20000x20000 double,
//! are refused with one error line naming the file, from the sizes they declare, before they
//! are inflated. Peak memory and time are in BENCHMARKS.md (no timed assertions here).

mod common;

use std::io::Write;
use std::path::Path;

use common::*;

const ZEROS: u64 = 200 << 20;

fn write_zeros(w: &mut impl Write, mut n: u64) {
    let chunk = vec![0u8; 1 << 20];
    while n > 0 {
        let k = n.min(chunk.len() as u64) as usize;
        w.write_all(&chunk[..k]).unwrap();
        n -= k as u64;
    }
}

fn long(v: u64) -> Vec<u8> {
    let mut out = vec![0x8a, 8];
    out.extend_from_slice(&v.to_le_bytes());
    out
}

fn text(s: &str) -> Vec<u8> {
    let mut out = vec![b'X'];
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out
}

/// `{"w": float32 tensor of `n` elements}` whose storage member is `n * 4` deflated zeros.
fn write_pth(path: &Path, n: u64) {
    let mut p = b"\x80\x02}(".to_vec();
    p.extend(text("w"));
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    p.extend(text("storage"));
    p.extend_from_slice(b"ctorch\nFloatStorage\n");
    p.extend(text("0"));
    p.extend(text("cpu"));
    p.extend(long(n));
    p.extend_from_slice(b"tQ");
    p.extend(long(0));
    p.extend(long(n));
    p.push(0x85);
    p.extend(long(1));
    p.extend_from_slice(b"\x85\x89ccollections\nOrderedDict\n)RtRu.");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(&p).unwrap();
    zip.start_file("archive/byteorder", stored).unwrap();
    zip.write_all(b"little").unwrap();
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1));
    zip.start_file("archive/data/0", deflated).unwrap();
    write_zeros(&mut zip, n * 4);
    zip.finish().unwrap();
}

/// A MAT file holding one deflated 20000x20000 double named `name` (3.2 GB declared), whose
/// stream holds 200 MB of zeros.
fn write_mat(path: &Path, name: &str) {
    fn el(ty: u32, data: &[u8]) -> Vec<u8> {
        let mut out = ty.to_le_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out.resize(out.len() + (8 - data.len() % 8) % 8, 0);
        out
    }
    let numel: u64 = 20000 * 20000;
    let mut payload = el(6, &[6, 0, 0, 0, 0, 0, 0, 0]);
    payload.extend(el(
        5,
        &[&20000i32.to_le_bytes()[..], &20000i32.to_le_bytes()[..]].concat(),
    ));
    payload.extend(el(1, name.as_bytes()));
    payload.extend_from_slice(&9u32.to_le_bytes());
    payload.extend_from_slice(&((numel * 8) as u32).to_le_bytes());
    let total = payload.len() as u64 + numel * 8;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&14u32.to_le_bytes()).unwrap();
    z.write_all(&(total as u32).to_le_bytes()).unwrap();
    z.write_all(&payload).unwrap();
    write_zeros(&mut z, ZEROS);
    let z = z.finish().unwrap();
    let mut file = b"MATLAB 5.0 MAT-file, bomb".to_vec();
    file.resize(116, b' ');
    file.extend_from_slice(&[0; 8]);
    file.extend_from_slice(&[0x00, 0x01, b'I', b'M']);
    file.extend_from_slice(&15u32.to_le_bytes());
    file.extend_from_slice(&(z.len() as u32).to_le_bytes());
    file.extend(z);
    std::fs::write(path, file).unwrap();
}

fn error_line(args: &[&str]) -> String {
    let out = posekit(args);
    assert_clean_failure(&out, &args.join(" "));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

#[test]
fn convert_refuses_a_storage_bomb_from_the_declared_shapes() {
    let dir = scratch("bomb-convert");
    let pth = dir.join("bomb.pth");
    write_pth(&pth, ZEROS / 4);
    assert!(std::fs::metadata(&pth).unwrap().len() < 1 << 20);
    let out = dir.join("out.safetensors");
    let err = error_line(&[
        "convert",
        path_str(&pth),
        "--model",
        "hrnet-w32",
        "-o",
        path_str(&out),
    ]);
    assert!(
        err.contains("bomb.pth") && err.contains("does not match the model") && err.contains("w"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn eval_mpii_skips_or_refuses_a_deflated_20000x20000_double() {
    let dir = scratch("bomb-mat");
    let pred = dir.join("pred.json");
    std::fs::write(&pred, "[]").unwrap();
    // Beside the variables asked for: skipped, so the error is the missing variables.
    let other = dir.join("other.mat");
    write_mat(&other, "bomb");
    let err = error_line(&[
        "eval",
        "mpii",
        "--gt",
        path_str(&other),
        "--pred",
        path_str(&pred),
    ]);
    assert!(
        err.contains("other.mat") && err.contains("variable is missing (the file has: bomb)"),
        "{err}"
    );
    // One of them: refused from its header.
    let wanted = dir.join("wanted.mat");
    write_mat(&wanted, "pos_gt_src");
    let err = error_line(&[
        "eval",
        "mpii",
        "--gt",
        path_str(&wanted),
        "--pred",
        path_str(&pred),
    ]);
    assert!(
        err.contains("wanted.mat: pos_gt_src") && err.contains("limit"),
        "{err}"
    );
}
