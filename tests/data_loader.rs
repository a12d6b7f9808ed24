//! The unpaired loader: the batch of a step is a pure function of (seed, step, files, sizes),
//! so resumed runs see the same data; workers, prefetching, errors and shutdown.

use image::{Rgb, RgbImage};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};
use ugatit::data::augment::{image_to_tensor, train_pixels};
use ugatit::data::loader::{BatchPlan, Domain, UnpairedLoader};
use ugatit::data::rng::Rng;
use ugatit::io::image::load_rgb8;

const BATCH: usize = 2;
const SIZE: u32 = 16;

/// `n` distinct noise PNGs of varying size in a fresh folder.
fn images(name: &str, n: usize, salt: u64) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("data_loader_{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (0..n)
        .map(|i| {
            let mut rng = Rng::for_stream(salt, &[i as u64]);
            let (w, h) = (20 + i as u32 % 5, 18 + i as u32 % 3);
            let img = RgbImage::from_fn(w, h, |_, _| {
                let v = rng.next_u64();
                Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
            });
            let path = dir.join(format!("{i:03}.png"));
            img.save(&path).unwrap();
            path
        })
        .collect()
}

fn collect(loader: &mut UnpairedLoader, steps: usize) -> Vec<(Tensor, Tensor)> {
    (0..steps).map(|_| loader.next().unwrap()).collect()
}

fn same(x: &[(Tensor, Tensor)], y: &[(Tensor, Tensor)]) -> bool {
    x.len() == y.len() && x.iter().zip(y).all(|((a1, b1), (a2, b2))| a1.equal(a2) && b1.equal(b2))
}

#[test]
fn resumed_loader_sees_exactly_the_uninterrupted_batches() {
    let a = images("resume_a", 7, 1);
    let b = images("resume_b", 5, 2);
    let mut full = UnpairedLoader::new(a.clone(), b.clone(), BATCH, SIZE, 11, 1, 2).unwrap();
    let all = collect(&mut full, 8);
    assert_eq!(full.next_step(), 9);
    for workers in [0, 1, 2, 3] {
        let mut resumed = UnpairedLoader::new(a.clone(), b.clone(), BATCH, SIZE, 11, 5, workers).unwrap();
        assert_eq!(resumed.next_step(), 5);
        let tail = collect(&mut resumed, 4);
        assert!(same(&all[4..], &tail), "workers={workers}: steps 5..8 differ after resuming");
    }
    // The synchronous plan computes the same thing.
    let plan = BatchPlan::new(a, b, BATCH, SIZE, 11).unwrap();
    for (i, (ta, tb)) in all.iter().enumerate() {
        let (pa, pb) = plan.load(i as u64 + 1).unwrap();
        assert!(pa.equal(ta) && pb.equal(tb), "step {}", i + 1);
    }
}

#[test]
fn shapes_kinds_and_ranges() {
    let a = images("shapes_a", 4, 3);
    let b = images("shapes_b", 3, 4);
    let mut loader = UnpairedLoader::new(a, b, BATCH, SIZE, 0, 1, 2).unwrap();
    for _ in 0..3 {
        let (ta, tb) = loader.next().unwrap();
        for t in [&ta, &tb] {
            assert_eq!(t.size(), [BATCH as i64, 3, SIZE as i64, SIZE as i64]);
            assert_eq!(t.kind(), Kind::Float);
            assert_eq!(t.device(), tch::Device::Cpu);
            let (lo, hi) = (t.min().double_value(&[]), t.max().double_value(&[]));
            assert!((-1.0..=1.0).contains(&lo) && (-1.0..=1.0).contains(&hi) && lo < hi, "{lo} {hi}");
            assert!(t.std(true).double_value(&[]) > 0.1, "noise images should not be flat");
        }
    }
}

#[test]
fn seeds_and_domains_give_different_independent_streams() {
    let a = images("seeds_a", 6, 5);
    let b = images("seeds_b", 6, 6);
    let run = |a: &[PathBuf], b: &[PathBuf], seed| {
        let mut l = UnpairedLoader::new(a.to_vec(), b.to_vec(), BATCH, SIZE, seed, 1, 1).unwrap();
        collect(&mut l, 6)
    };
    let base = run(&a, &b, 1);
    let other = run(&a, &b, 2);
    assert!(base.iter().zip(&other).any(|((x, _), (y, _))| !x.equal(y)), "seed does not change domain A");
    assert!(base.iter().zip(&other).any(|((_, x), (_, y))| !x.equal(y)), "seed does not change domain B");

    // Domain A's batches do not depend on domain B's files.
    let b_small = images("seeds_b_small", 3, 7);
    let swapped = run(&a, &b_small, 1);
    assert!(base.iter().zip(&swapped).all(|((x, _), (y, _))| x.equal(y)));

    // With identical file lists the two domains still draw different orders and augmentations.
    let twin = run(&a, &a, 1);
    assert!(twin.iter().any(|(x, y)| !x.equal(y)), "A and B streams coincide");
    let plan = BatchPlan::new(a.clone(), a, BATCH, SIZE, 1).unwrap();
    let order = |d| (1..=9).flat_map(|s| plan.draws(d, s).unwrap()).map(|dr| dr.file).collect::<Vec<_>>();
    assert_ne!(order(Domain::A), order(Domain::B));
}

#[test]
fn epochs_are_permutations_with_the_partial_batch_dropped() {
    let a = images("epochs_a", 7, 8);
    let b = images("epochs_b", 4, 9);
    let plan = BatchPlan::new(a, b, BATCH, SIZE, 3).unwrap();
    assert_eq!(plan.batches_per_epoch(Domain::A), 3);
    assert_eq!(plan.batches_per_epoch(Domain::B), 2);
    let mut leftovers = HashSet::new();
    let mut orders = HashSet::new();
    for epoch in 0..12u64 {
        let draws: Vec<_> = (1..=3).flat_map(|k| plan.draws(Domain::A, epoch * 3 + k).unwrap()).collect();
        assert!(draws.iter().all(|d| d.epoch == epoch));
        assert_eq!(draws.iter().map(|d| d.position).collect::<Vec<_>>(), (0..6).collect::<Vec<_>>());
        let files: Vec<usize> = draws.iter().map(|d| d.file).collect();
        let distinct: HashSet<usize> = files.iter().copied().collect();
        assert_eq!(distinct.len(), 6, "epoch {epoch} repeats a file: {files:?}");
        leftovers.insert((0..7).find(|f| !distinct.contains(f)).unwrap());
        orders.insert(files);
    }
    assert!(leftovers.len() > 1, "the dropped image should change between epochs");
    assert!(orders.len() > 6, "epochs should be reshuffled");
    // Domain B has no leftover: every epoch covers all four files.
    for epoch in 0..5u64 {
        let files: HashSet<usize> =
            (1..=2).flat_map(|k| plan.draws(Domain::B, epoch * 2 + k).unwrap()).map(|d| d.file).collect();
        assert_eq!(files.len(), 4);
    }
    let files = plan.step_files(Domain::A, 1).unwrap();
    assert_eq!(files.len(), BATCH);
    assert!(plan.draws(Domain::A, 0).is_err());
}

#[test]
fn samples_are_the_drawn_file_with_the_drawn_flip_and_crop() {
    let a = images("augment_a", 5, 10);
    let b = images("augment_b", 5, 11);
    let plan = BatchPlan::new(a.clone(), b, 1, SIZE, 4).unwrap();
    let mut loader = UnpairedLoader::new(a.clone(), plan.files(Domain::B).to_vec(), 1, SIZE, 4, 1, 2).unwrap();
    let mut flips = HashSet::new();
    let mut crops = HashSet::new();
    for step in 1..=40u64 {
        let (ta, _) = loader.next().unwrap();
        let draw = plan.draws(Domain::A, step).unwrap()[0];
        let aug = plan.augment(Domain::A, draw);
        flips.insert(aug.flip);
        crops.insert((aug.top, aug.left));
        let expected = image_to_tensor(&train_pixels(&load_rgb8(&a[draw.file]).unwrap(), SIZE, aug).unwrap());
        assert!(ta.get(0).equal(&expected), "step {step}");
    }
    assert_eq!(flips.len(), 2, "flips never vary");
    assert!(crops.len() > 10, "crops barely vary: {crops:?}");
}

#[test]
fn the_same_image_is_augmented_differently_across_epochs() {
    // One file, batch 1: every step is the same image, only the augmentation changes.
    let a = images("one_a", 1, 12);
    let mut loader = UnpairedLoader::new(a.clone(), a, 1, SIZE, 5, 1, 0).unwrap();
    let batches = collect(&mut loader, 12);
    let distinct = (0..batches.len()).filter(|&i| (0..i).all(|j| !batches[i].0.equal(&batches[j].0))).count();
    assert!(distinct > 6, "only {distinct} distinct augmentations in 12 steps");
}

#[test]
fn decode_errors_name_the_step_and_file_and_the_loader_continues() {
    let good = images("errors_good", 2, 13);
    let dir = good[0].parent().unwrap();
    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\ntruncated").unwrap();
    for workers in [0, 2] {
        let mut loader = UnpairedLoader::new(vec![broken.clone()], good.clone(), 1, SIZE, 0, 1, workers).unwrap();
        for step in 1..=3 {
            let err = format!("{:#}", loader.next().unwrap_err());
            assert!(err.contains(&broken.display().to_string()), "{err}");
            assert!(err.contains(&format!("step {step}")), "{err}");
        }
    }
    // A file deleted after the scan is reported, not a panic.
    let gone = dir.join("gone.png");
    let mut loader = UnpairedLoader::new(vec![gone.clone()], good, 1, SIZE, 0, 1, 1).unwrap();
    assert!(format!("{:#}", loader.next().unwrap_err()).contains("gone.png"));
}

#[test]
fn invalid_configurations_are_errors() {
    let a = images("invalid_a", 3, 14);
    assert!(UnpairedLoader::new(a.clone(), a.clone(), 0, SIZE, 0, 1, 1).is_err());
    assert!(UnpairedLoader::new(a.clone(), a.clone(), 1, 0, 0, 1, 1).is_err());
    assert!(UnpairedLoader::new(a.clone(), a.clone(), 1, SIZE, 0, 0, 1).is_err());
    let err = UnpairedLoader::new(a.clone(), a[..1].to_vec(), 2, SIZE, 0, 1, 1).err().unwrap();
    assert!(format!("{err:#}").contains("domain B"), "{err:#}");
    assert!(UnpairedLoader::new(Vec::new(), a, 1, SIZE, 0, 1, 1).is_err());
}

#[test]
fn dropping_the_loader_stops_its_threads_promptly() {
    let a = images("drop_a", 4, 15);
    let started = Instant::now();
    for consumed in [0, 1, 5] {
        let mut loader = UnpairedLoader::new(a.clone(), a.clone(), 2, 64, 0, 1, 3).unwrap();
        for _ in 0..consumed {
            let _batch = loader.next().unwrap();
        }
        // Let the workers fill their queues and block.
        std::thread::sleep(Duration::from_millis(50));
        drop(loader);
    }
    assert!(started.elapsed() < Duration::from_secs(20));
}
