//! Decompression bombs in `.pth` files (issue 7, item 4): a zip member that inflates to far
//! more than the pickle's tensors need must be refused from the sizes the file declares, or
//! stopped by a bounded inflation, before the memory is spent. The bombs are written here: a
//! 200 MB member of zeros deflates to ~200 KB.

use std::io::Write;
use std::path::{Path, PathBuf};

use posekit_nn::weights::{load_weights, read_pth, Item, WeightsError};
use tch::nn::VarStore;
use tch::Device;

const BOMB_BYTES: u64 = 200 << 20;

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("posekit-bombs-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// LONG1 with 8 bytes: any non-negative i64.
fn long(v: u64) -> Vec<u8> {
    let mut out = vec![0x8a, 8];
    out.extend_from_slice(&v.to_le_bytes());
    out
}

fn unicode(s: &str) -> Vec<u8> {
    let mut out = vec![b'X'];
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out
}

/// `{"w": tensor}` where the tensor is a view of `size` elements (stride 1, offset 0) of a
/// float32 storage `"0"` the pickle declares with `storage_numel` elements, as `torch.save`
/// writes it (protocol 2).
fn pickle(storage_numel: u64, size: u64) -> Vec<u8> {
    let mut p = b"\x80\x02}(".to_vec();
    p.extend(unicode("w"));
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    // persistent id ('storage', torch.FloatStorage, '0', 'cpu', numel) and BINPERSID
    p.push(b'(');
    p.extend(unicode("storage"));
    p.extend_from_slice(b"ctorch\nFloatStorage\n");
    p.extend(unicode("0"));
    p.extend(unicode("cpu"));
    p.extend(long(storage_numel));
    p.extend_from_slice(b"tQ");
    p.extend(long(0));
    p.extend(long(size));
    p.push(0x85);
    p.extend(long(1));
    p.push(0x85);
    p.push(0x89);
    p.extend_from_slice(b"ccollections\nOrderedDict\n)Rt");
    p.extend_from_slice(b"Ru.");
    p
}

/// A zip-format checkpoint whose storage member holds `member_bytes` zeros, deflated.
fn write_pth(path: &Path, pkl: &[u8], member_bytes: u64) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1));
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(pkl).unwrap();
    zip.start_file("archive/byteorder", stored).unwrap();
    zip.write_all(b"little").unwrap();
    zip.start_file("archive/data/0", deflated).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = member_bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        zip.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    zip.finish().unwrap();
}

fn message(err: WeightsError) -> String {
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    text
}

#[test]
fn a_member_larger_than_its_declared_storage_is_refused_before_inflating() {
    let dir = scratch("larger");
    let path = dir.join("bomb.pth");
    // The pickle declares 10 floats (40 bytes); the member inflates to 200 MB.
    write_pth(&path, &pickle(10, 10), BOMB_BYTES);
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
    let err = message(read_pth(&path).unwrap_err());
    assert!(
        err.contains("bomb.pth")
            && err.contains("archive/data/0")
            && err.contains(&format!("declares {BOMB_BYTES} bytes"))
            && err.contains("not inflating"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sets the uncompressed size the central directory records for `member` (the size the zip
/// reader believes) to `size`: a header that lies.
fn patch_central_size(bytes: &mut [u8], member: &str, size: u32) {
    let name = member.as_bytes();
    let mut i = 0;
    while i + 46 <= bytes.len() {
        if bytes[i..i + 4] == *b"PK\x01\x02" {
            let len = u16::from_le_bytes([bytes[i + 28], bytes[i + 29]]) as usize;
            if bytes.get(i + 46..i + 46 + len) == Some(name) {
                bytes[i + 24..i + 28].copy_from_slice(&size.to_le_bytes());
                return;
            }
        }
        i += 1;
    }
    panic!("{member} not in the central directory");
}

#[test]
fn a_member_that_inflates_past_its_header_is_stopped() {
    let dir = scratch("lying");
    let path = dir.join("lying.pth");
    write_pth(&path, &pickle(10, 10), BOMB_BYTES);
    let mut bytes = std::fs::read(&path).unwrap();
    patch_central_size(&mut bytes, "archive/data/0", 40);
    std::fs::write(&path, &bytes).unwrap();
    let err = message(read_pth(&path).unwrap_err());
    assert!(
        err.contains("lying.pth")
            && err.contains("archive/data/0")
            && err.contains("inflates to more than the 40 bytes"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_storage_larger_than_its_views_need_is_read_only_as_far_as_they_reach() {
    let dir = scratch("unused");
    let path = dir.join("view.pth");
    // A 200 MB storage of which the tensor uses the first 3 elements.
    write_pth(&path, &pickle(BOMB_BYTES / 4, 3), BOMB_BYTES);
    let ckpt = read_pth(&path).unwrap();
    let Some(Item::Tensor(t)) = ckpt.root.get("w") else {
        panic!("no tensor w: {:?}", ckpt.root)
    };
    assert_eq!((t.shape.clone(), t.data.len()), (vec![3], 12));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_declared_tensor_larger_than_the_member_is_refused_before_inflating() {
    let dir = scratch("short");
    let path = dir.join("short.pth");
    // The pickle declares a 2 GB tensor; the member has 200 MB.
    write_pth(&path, &pickle(500_000_000, 500_000_000), BOMB_BYTES);
    let err = message(read_pth(&path).unwrap_err());
    assert!(
        err.contains("short.pth") && err.contains("archive/data/0") && err.contains("reach"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn with_a_model_the_shapes_are_checked_before_any_storage_is_inflated() {
    let dir = scratch("model");
    let path = dir.join("big.pth");
    // Consistent sizes (a 200 MB tensor, a 200 MB member), but the model's `w` has 4 elements.
    write_pth(&path, &pickle(BOMB_BYTES / 4, BOMB_BYTES / 4), BOMB_BYTES);
    let mut vs = VarStore::new(Device::Cpu);
    let _w = vs.root().zeros("w", &[4]);
    let err = message(load_weights(&mut vs, &path).unwrap_err());
    assert!(
        err.contains("big.pth")
            && err.contains("mis-shaped")
            && err.contains(&format!("checkpoint [{}]", BOMB_BYTES / 4)),
        "{err}"
    );
    // The same file with the right shape loads (it is a valid, if wasteful, checkpoint).
    let small = dir.join("small.pth");
    write_pth(&small, &pickle(4, 4), 16);
    load_weights(&mut vs, &small).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
