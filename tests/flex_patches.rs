//! The patched flex (vendor/burn-flex/PATCHES.md) computes on several threads what it computed
//! on one: element-wise ops (contiguous, broadcast, in place or not, scalar, unary, ReLU's
//! backward) and the scatter-add give the same bits on 1 and 4 threads and the values a plain
//! loop gives; a long, thin matrix product (split along its inner dimension) gives the same
//! bits on any number of threads and agrees with an f64 reference. The tensors are large
//! enough (at least 16,384 elements) to take the parallel paths.

use burn::tensor::activation::relu;
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn tensor(data: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

fn floats(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 data")
}

fn bits(t: Tensor<2>) -> Vec<u32> {
    floats(t).into_iter().map(f32::to_bits).collect()
}

fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
        .install(f)
}

const ROWS: usize = 5000;
const COLS: usize = 40;

/// Every element-wise path on [`ROWS`] x [`COLS`] operands.
fn element_wise_results() -> Vec<Vec<u32>> {
    let device = Device::flex();
    let x = tensor(values(ROWS * COLS, 1), [ROWS, COLS], &device);
    let y = tensor(values(ROWS * COLS, 2), [ROWS, COLS], &device);
    let row = tensor(values(COLS, 3), [1, COLS], &device);
    let col = tensor(values(ROWS, 4), [ROWS, 1], &device);
    let mut out = vec![
        // Shared operands: the allocating paths.
        bits(x.clone() + y.clone()),
        bits(x.clone() * row.clone()),
        bits(col.clone() - x.clone()),
        bits(x.clone().mul_scalar(3.0)),
        bits(x.clone().exp()),
        // A uniquely owned left operand: the in-place paths.
        bits((x.clone() + y.clone()) - row.clone()),
        bits((x.clone() + y.clone()) * col.clone()),
        bits((x.clone() * y.clone()).div(row.clone().add_scalar(2.0))),
        bits((x.clone() + y.clone()).add_scalar(0.5).abs().sqrt()),
        bits(relu(x.clone() - y.clone())),
    ];
    // ReLU's backward.
    let ad = device.autodiff();
    let xa = tensor(values(ROWS * COLS, 1), [ROWS, COLS], &ad).require_grad();
    let grads = (relu(xa.clone()) * tensor(values(ROWS * COLS, 5), [ROWS, COLS], &ad))
        .sum()
        .backward();
    out.push(bits(xa.grad(&grads).expect("a gradient")));
    out
}

#[test]
fn element_wise_ops_give_the_same_bits_on_one_thread_and_on_four() {
    let one = on_threads(1, element_wise_results);
    let four = on_threads(4, element_wise_results);
    assert_eq!(one.len(), four.len());
    for (i, (a, b)) in one.iter().zip(&four).enumerate() {
        assert!(a == b, "result {i} differs between 1 and 4 threads");
    }
    // And the values are the plain loop's.
    let (x, y, row) = (
        values(ROWS * COLS, 1),
        values(ROWS * COLS, 2),
        values(COLS, 3),
    );
    let sum: Vec<u32> = x.iter().zip(&y).map(|(a, b)| (a + b).to_bits()).collect();
    assert_eq!(four[0], sum);
    let scaled: Vec<u32> = x
        .iter()
        .enumerate()
        .map(|(i, a)| (a * row[i % COLS]).to_bits())
        .collect();
    assert_eq!(four[1], scaled);
    let relu_of_difference: Vec<u32> = x
        .iter()
        .zip(&y)
        .map(|(a, b)| (a - b).max(0.0).to_bits())
        .collect();
    assert_eq!(four[9], relu_of_difference);
}

#[test]
fn the_scatter_add_gives_the_same_bits_on_one_thread_and_on_four() {
    const TARGET_ROWS: usize = 3000;
    const SOURCE_ROWS: usize = 20_000;
    const WIDTH: usize = 16;
    let index: Vec<i64> = values(SOURCE_ROWS, 6)
        .iter()
        .map(|v| {
            let row = ((v + 1.0) / 2.0 * TARGET_ROWS as f32) as usize % TARGET_ROWS;
            i64::try_from(row).expect("a small row")
        })
        .collect();
    let source = values(SOURCE_ROWS * WIDTH, 7);
    let run = || {
        let device = Device::flex();
        let target = tensor(
            values(TARGET_ROWS * WIDTH, 8),
            [TARGET_ROWS, WIDTH],
            &device,
        );
        let indices =
            Tensor::<1, Int>::from_data(TensorData::new(index.clone(), [SOURCE_ROWS]), &device);
        let updates = tensor(source.clone(), [SOURCE_ROWS, WIDTH], &device);
        bits(target.select_assign(0, indices, updates, IndexingUpdateOp::Add))
    };
    let one = on_threads(1, run);
    let four = on_threads(4, run);
    assert!(
        one == four,
        "the scatter-add differs between 1 and 4 threads"
    );
    // The plain loop, in index order.
    let mut expected = values(TARGET_ROWS * WIDTH, 8);
    for (i, &row) in index.iter().enumerate() {
        for j in 0..WIDTH {
            expected[row as usize * WIDTH + j] += source[i * WIDTH + j];
        }
    }
    let expected: Vec<u32> = expected.into_iter().map(f32::to_bits).collect();
    assert!(four == expected, "the scatter-add is not the plain loop's");
}

#[test]
fn a_long_thin_product_gives_the_same_bits_on_any_threads_and_the_right_values() {
    // [M, K] x [K, N] with a long K: the shape of a convolution's weight gradient.
    const M: usize = 27;
    const K: usize = 20_000;
    const N: usize = 32;
    let (a, b) = (values(M * K, 9), values(K * N, 10));
    let run = || {
        let device = Device::flex();
        // The left operand transposed, as autodiff hands it over: [K, M] viewed as [M, K].
        let left = tensor(a.clone(), [K, M], &device).transpose();
        bits(left.matmul(tensor(b.clone(), [K, N], &device)))
    };
    let one = on_threads(1, run);
    let two = on_threads(2, run);
    let four = on_threads(4, run);
    assert!(
        one == two && two == four,
        "the product depends on the threads"
    );
    for i in 0..M {
        for j in 0..N {
            let exact: f64 = (0..K)
                .map(|k| f64::from(a[k * M + i]) * f64::from(b[k * N + j]))
                .sum();
            let got = f64::from(f32::from_bits(four[i * N + j]));
            assert!(
                (got - exact).abs() <= 1e-4 * exact.abs().max(10.0),
                "({i}, {j}): {got} against {exact}"
            );
        }
    }
}
