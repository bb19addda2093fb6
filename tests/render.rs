//! The particle renderer: every WGSL file under `shaders/` validates with naga (no GPU), the
//! uniform's Rust mirror matches naga's layout, and, on whatever wgpu adapter exists (lavapipe
//! in CI), known particles and lines land on the pixels the CPU projection says, in their
//! colours, offscreen and through egui's paint callback.
//!
//! With no adapter at all the GPU tests fail, unless `MSBREG_SKIP_WGPU_TESTS=1`, when they say
//! so and pass.

use std::path::PathBuf;
use std::sync::OnceLock;

use eframe::egui;
use eframe::wgpu;
use eframe::wgpu::naga;
use msbreg::render::{
    self, Camera, FrameData, FrameUniform, HeadlessGpu, LineVertex, Offscreen, Particle,
    RenderError, RenderStyle, ViewMode,
};

const RED: [f32; 4] = [1.0, 0.0, 0.0, 1.0];
const GREEN: [f32; 4] = [0.0, 1.0, 0.0, 1.0];
const BLUE: [f32; 4] = [0.0, 0.0, 1.0, 1.0];
const WIDTH: u32 = 64;
const HEIGHT: u32 = 48;

// ---- Shaders, no GPU ----------------------------------------------------------------------

fn wgsl_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("shaders/ exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wgsl"))
        .collect();
    files.sort();
    files
}

fn parse(path: &std::path::Path) -> (String, naga::Module) {
    let source = std::fs::read_to_string(path).expect("readable shader");
    let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|error| {
        panic!(
            "{}",
            error.emit_to_string_with_path(&source, &path.display().to_string())
        )
    });
    (source, module)
}

#[test]
fn every_shader_validates() {
    let files = wgsl_files();
    let names: Vec<_> = files
        .iter()
        .filter_map(|path| path.file_name()?.to_str())
        .collect();
    assert!(
        names.contains(&"particles.wgsl") && names.contains(&"lines.wgsl"),
        "{names:?}"
    );
    for path in &files {
        let (source, module) = parse(path);
        // The WebGPU baseline: what every adapter offers.
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::default(),
        );
        if let Err(error) = validator.validate(&module) {
            panic!(
                "{}",
                error.emit_to_string_with_path(&source, &path.display().to_string())
            );
        }
    }
}

#[test]
fn shaders_are_the_ones_compiled_in() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("readable shader");
    assert_eq!(read("particles.wgsl"), render::PARTICLES_WGSL);
    assert_eq!(read("lines.wgsl"), render::LINES_WGSL);
}

/// `FrameUniform` in every shader that declares it has the Rust mirror's size and offsets.
#[test]
fn frame_uniform_layout_matches_the_rust_mirror() {
    let expected = [
        (
            "world_to_clip",
            std::mem::offset_of!(FrameUniform, world_to_clip),
        ),
        (
            "viewport_px",
            std::mem::offset_of!(FrameUniform, viewport_px),
        ),
        (
            "point_size_px",
            std::mem::offset_of!(FrameUniform, point_size_px),
        ),
        ("opacity", std::mem::offset_of!(FrameUniform, opacity)),
    ];
    let mut declared = 0;
    for path in wgsl_files() {
        let (_, module) = parse(&path);
        for (_, ty) in module.types.iter() {
            if ty.name.as_deref() != Some("FrameUniform") {
                continue;
            }
            let naga::TypeInner::Struct { members, span } = &ty.inner else {
                panic!("{}: FrameUniform is not a struct", path.display());
            };
            declared += 1;
            assert_eq!(
                *span as usize,
                size_of::<FrameUniform>(),
                "{}",
                path.display()
            );
            let members: Vec<_> = members
                .iter()
                .map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize))
                .collect();
            let expected: Vec<_> = expected
                .iter()
                .map(|(name, offset)| ((*name).to_owned(), *offset))
                .collect();
            assert_eq!(members, expected, "{}", path.display());
        }
    }
    assert_eq!(
        declared, 2,
        "particles.wgsl and lines.wgsl both declare FrameUniform"
    );
}

// ---- Offscreen rendering on a real adapter ------------------------------------------------

/// The device shared by the tests of this process; `None` when there is no adapter and
/// `MSBREG_SKIP_WGPU_TESTS=1`.
fn gpu() -> Option<&'static HeadlessGpu> {
    static GPU: OnceLock<Option<HeadlessGpu>> = OnceLock::new();
    GPU.get_or_init(|| match HeadlessGpu::new() {
        Ok(gpu) => {
            eprintln!("render tests on {}", gpu.describe());
            Some(gpu)
        }
        Err(error @ RenderError::NoAdapter { .. }) => {
            if std::env::var("MSBREG_SKIP_WGPU_TESTS").is_ok_and(|v| v == "1") {
                eprintln!("skipping the wgpu render tests (MSBREG_SKIP_WGPU_TESTS=1): {error}");
                None
            } else {
                panic!(
                    "{error}. Set MSBREG_SKIP_WGPU_TESTS=1 to skip the GPU render tests on a \
                     machine without any wgpu adapter."
                )
            }
        }
        Err(error) => panic!("{error}"),
    })
    .as_ref()
}

/// A 2D camera whose visible half-height is exactly 1: 24 px per unit on a 48 px tall target.
fn unit_flat_camera() -> Camera {
    let mut camera = Camera::new(ViewMode::Flat2d);
    camera.distance = 1.0 / (0.5 * camera.fov_y_rad).tan();
    camera
}

fn frame(particles: Vec<Particle>, lines: Vec<LineVertex>, camera: Camera) -> FrameData {
    FrameData {
        particles,
        lines,
        camera,
        style: RenderStyle {
            point_size_px: 9.0,
            opacity: 1.0,
        },
    }
}

/// Rendered RGBA8 pixels.
struct Image {
    pixels: Vec<u8>,
    width: u32,
}

impl Image {
    fn at(&self, x: u32, y: u32) -> [u8; 4] {
        let i = 4 * (y * self.width + x) as usize;
        self.pixels[i..i + 4].try_into().expect("4 bytes")
    }

    /// The pixel containing the projected position `p` (pixel coordinates).
    fn at_point(&self, p: [f32; 2]) -> [u8; 4] {
        self.at(p[0].floor() as u32, p[1].floor() as u32)
    }

    fn all_equal(&self, value: [u8; 4]) -> bool {
        self.pixels.chunks_exact(4).all(|px| px == value)
    }
}

fn render_with(target: &mut Offscreen, frame: &FrameData) -> Image {
    let gpu = gpu().expect("caller checked");
    let mut renderer = target.renderer(&gpu.device);
    let pixels = target
        .render(&gpu.device, &gpu.queue, &mut renderer, frame)
        .expect("render and read back");
    let [width, height] = target.size();
    assert_eq!(pixels.len(), (4 * width * height) as usize);
    Image { pixels, width }
}

fn render(frame: &FrameData) -> Image {
    let gpu = gpu().expect("caller checked");
    let mut target = Offscreen::new(&gpu.device, WIDTH, HEIGHT).expect("offscreen target");
    render_with(&mut target, frame)
}

fn assert_close(actual: [u8; 4], expected: [u8; 4], tolerance: u8, what: &str) {
    let ok = actual
        .iter()
        .zip(expected)
        .all(|(a, e)| a.abs_diff(e) <= tolerance);
    assert!(
        ok,
        "{what}: got {actual:?}, expected {expected:?} (+-{tolerance})"
    );
}

const BACKGROUND: [u8; 4] = [0, 0, 0, 255];
const VIEWPORT: [f32; 2] = [WIDTH as f32, HEIGHT as f32];

#[test]
fn points_land_where_the_camera_projects_them() {
    if gpu().is_none() {
        return;
    }
    let camera = unit_flat_camera();
    let red_at = [0.0, 0.0, 0.0];
    let green_at = [0.5, 0.25, 0.0];
    let image = render(&frame(
        vec![Particle::new(red_at, RED), Particle::new(green_at, GREEN)],
        Vec::new(),
        camera,
    ));
    // By hand: 24 px per unit, origin at (32, 24), y up.
    let red_px = camera.project(red_at, VIEWPORT).expect("in view");
    let green_px = camera.project(green_at, VIEWPORT).expect("in view");
    assert_eq!(red_px, [32.0, 24.0]);
    assert_eq!(green_px, [44.0, 18.0]);

    assert_eq!(image.at_point(red_px), [255, 0, 0, 255]);
    assert_eq!(image.at_point(green_px), [0, 255, 0, 255]);
    // Inside the radius (4.5 px) on each side, outside beyond it.
    assert_eq!(image.at(32 - 3, 24), [255, 0, 0, 255]);
    assert_eq!(image.at(32 + 2, 24 + 2), [255, 0, 0, 255]);
    assert_eq!(image.at(32 + 7, 24), BACKGROUND);
    assert_eq!(image.at(32, 24 + 7), BACKGROUND);
    // The disc is round: the quad's corner is empty.
    assert_eq!(image.at(32 + 4, 24 + 4), BACKGROUND);
    // Background far from both.
    assert_eq!(image.at(2, 2), BACKGROUND);
    assert_eq!(image.at(WIDTH - 1, HEIGHT - 1), BACKGROUND);
}

#[test]
fn the_edge_is_antialiased() {
    if gpu().is_none() {
        return;
    }
    let mut data = frame(
        vec![Particle::new([0.0; 3], [1.0, 1.0, 1.0, 1.0])],
        Vec::new(),
        unit_flat_camera(),
    );
    data.particles[0].size_scale = 2.0; // radius 9 px
    let image = render(&data);
    // Along the row through the centre (pixel centres at 32.5 + k), the red channel falls
    // from full to zero across the edge, through intermediate values.
    let row: Vec<u8> = (32..WIDTH).map(|x| image.at(x, 24)[0]).collect();
    assert_eq!(row[0], 255);
    assert!(row.windows(2).all(|w| w[1] <= w[0]), "{row:?}");
    assert!(row.iter().any(|&v| v > 0 && v < 255), "{row:?}");
    assert_eq!(*row.last().expect("row"), 0);
}

#[test]
fn opacity_blends_over_the_background() {
    if gpu().is_none() {
        return;
    }
    let mut data = frame(
        vec![Particle::new([0.0; 3], [1.0, 1.0, 1.0, 1.0])],
        Vec::new(),
        unit_flat_camera(),
    );
    data.style.opacity = 0.5;
    let image = render(&data);
    assert_close(
        image.at(32, 24),
        [128, 128, 128, 255],
        1,
        "half-opaque white over black",
    );

    // Per-particle alpha multiplies the global opacity.
    data.particles[0].color[3] = 0.5;
    let image = render(&data);
    assert_close(
        image.at(32, 24),
        [64, 64, 64, 255],
        1,
        "quarter-opaque white over black",
    );
}

#[test]
fn lines_draw_under_particles() {
    if gpu().is_none() {
        return;
    }
    let camera = unit_flat_camera();
    // Through the centres of pixel row 36 (y px = 36.5).
    let y = 1.0 - 2.0 * 36.5 / HEIGHT as f32;
    let lines = LineVertex::segment([-2.0, y, 0.0], [2.0, y, 0.0], BLUE).to_vec();
    let particles = vec![Particle::new([0.0, y, 0.0], RED)];
    let image = render(&frame(particles, lines, camera));
    assert_eq!(image.at(5, 36), [0, 0, 255, 255]);
    assert_eq!(image.at(60, 36), [0, 0, 255, 255]);
    assert_eq!(image.at(5, 33), BACKGROUND);
    assert_eq!(image.at(5, 39), BACKGROUND);
    // The particle sits on the line and is drawn after it.
    assert_eq!(image.at(32, 36), [255, 0, 0, 255]);
}

#[test]
fn orbit_camera_centres_the_target_and_culls_behind_the_eye() {
    if gpu().is_none() {
        return;
    }
    let mut camera = Camera::new(ViewMode::Orbit3d);
    camera.target = [0.3, -0.2, 0.1];
    // Twice the distance from the target along the eye's direction: behind the eye.
    let (yaw, pitch) = (camera.yaw_rad, camera.pitch_rad);
    let back = [
        pitch.cos() * yaw.sin(),
        pitch.sin(),
        pitch.cos() * yaw.cos(),
    ];
    let behind_eye: [f32; 3] =
        std::array::from_fn(|i| camera.target[i] + back[i] * 2.0 * camera.distance);
    assert_eq!(camera.project(behind_eye, VIEWPORT), None);
    let centre = camera.project(camera.target, VIEWPORT).expect("in view");
    assert!((centre[0] - 32.0).abs() < 1e-3 && (centre[1] - 24.0).abs() < 1e-3);

    let image = render(&frame(
        vec![
            Particle::new(camera.target, GREEN),
            Particle::new(behind_eye, RED),
        ],
        Vec::new(),
        camera,
    ));
    assert_eq!(image.at_point(centre), [0, 255, 0, 255]);
    let red_pixels = image.pixels.chunks_exact(4).filter(|px| px[0] > 0).count();
    assert_eq!(red_pixels, 0, "a particle behind the eye is not drawn");
}

#[test]
fn empty_and_hidden_frames_are_background() {
    if gpu().is_none() {
        return;
    }
    let image = render(&frame(Vec::new(), Vec::new(), Camera::default()));
    assert!(image.all_equal(BACKGROUND));

    let mut hidden = Particle::new([0.0; 3], RED);
    hidden.size_scale = 0.0;
    let image = render(&frame(vec![hidden], Vec::new(), unit_flat_camera()));
    assert!(image.all_equal(BACKGROUND));

    // A clear colour of one's own.
    let gpu = gpu().expect("checked");
    let mut target = Offscreen::new(&gpu.device, 8, 8).expect("target");
    target.clear_color = wgpu::Color {
        r: 0.0,
        g: 0.0,
        b: 1.0,
        a: 1.0,
    };
    let image = render_with(
        &mut target,
        &frame(Vec::new(), Vec::new(), Camera::default()),
    );
    assert!(image.all_equal([0, 0, 255, 255]));
}

#[test]
fn buffers_grow_and_new_geometry_replaces_the_old() {
    let Some(gpu) = gpu() else {
        return;
    };
    let mut target = Offscreen::new(&gpu.device, WIDTH, HEIGHT).expect("target");
    let mut renderer = target.renderer(&gpu.device);
    let camera = unit_flat_camera();

    // 5000 particles (more than the initial 1024) off to the side, the last one in the centre.
    let mut particles = vec![Particle::new([10.0, 10.0, 0.0], RED); 5000];
    particles[4999] = Particle::new([0.0; 3], GREEN);
    let data = frame(particles, Vec::new(), camera);
    let counts = renderer.prepare(&gpu.device, &gpu.queue, &data, target.size());
    assert_eq!(counts.particles, 5000);
    let pixels = target
        .render(&gpu.device, &gpu.queue, &mut renderer, &data)
        .expect("render");
    let image = Image {
        pixels,
        width: WIDTH,
    };
    assert_eq!(image.at(32, 24), [0, 255, 0, 255]);

    // Same geometry, moved camera: the uniform follows.
    let mut moved = data.clone();
    moved.camera.pan(-10.0, 0.0, HEIGHT as f32);
    let image = Image {
        pixels: target
            .render(&gpu.device, &gpu.queue, &mut renderer, &moved)
            .expect("render"),
        width: WIDTH,
    };
    assert_eq!(image.at(22, 24), [0, 255, 0, 255]);
    assert_eq!(image.at(32, 24), BACKGROUND);

    // New geometry, fewer particles: replaces the old.
    let smaller = frame(vec![Particle::new([0.0; 3], BLUE)], Vec::new(), camera);
    let image = Image {
        pixels: target
            .render(&gpu.device, &gpu.queue, &mut renderer, &smaller)
            .expect("render"),
        width: WIDTH,
    };
    assert_eq!(image.at(32, 24), [0, 0, 255, 255]);
    assert_eq!(
        image.pixels.chunks_exact(4).filter(|px| px[1] > 0).count(),
        0,
        "no green left over"
    );
}

#[test]
fn msaa_and_srgb_targets_agree_with_the_plain_one() {
    let Some(gpu) = gpu() else {
        return;
    };
    let grey = [0.5, 0.5, 0.5, 1.0];
    let data = frame(
        vec![
            Particle::new([0.0; 3], RED),
            Particle::new([0.5, 0.25, 0.0], grey),
        ],
        Vec::new(),
        unit_flat_camera(),
    );
    for (format, samples) in [
        (wgpu::TextureFormat::Rgba8Unorm, 1),
        (wgpu::TextureFormat::Rgba8Unorm, 4),
        (wgpu::TextureFormat::Rgba8UnormSrgb, 1),
        (wgpu::TextureFormat::Rgba8UnormSrgb, 4),
    ] {
        let mut target =
            Offscreen::with_format(&gpu.device, WIDTH, HEIGHT, format, samples).expect("target");
        let image = render_with(&mut target, &data);
        let what = format!("{format:?} x{samples}");
        assert_eq!(image.at(32, 24), [255, 0, 0, 255], "{what}");
        // Gamma-space 0.5 is 128 in both: an sRGB target gets it decoded, then encodes it.
        assert_close(image.at(44, 18), [128, 128, 128, 255], 1, &what);
        assert_eq!(image.at(2, 2), BACKGROUND, "{what}");
    }
    assert!(matches!(
        Offscreen::with_format(&gpu.device, 4, 4, wgpu::TextureFormat::Rgba8Unorm, 3),
        Err(RenderError::UnsupportedSampleCount(3))
    ));
    assert!(matches!(
        Offscreen::with_format(&gpu.device, 4, 4, wgpu::TextureFormat::Rgba16Float, 1),
        Err(RenderError::UnsupportedFormat(_))
    ));
}

/// Through egui: `install` into egui-wgpu's callback resources, a `callback` shape in a
/// rectangle that is not the whole screen, at 2 pixels per point; egui's own renderer runs
/// `prepare` and `paint`.
#[test]
fn egui_paint_callback_draws_in_its_rectangle() {
    if gpu().is_none() {
        return;
    }
    let render_state = egui_kittest::wgpu::create_render_state(
        egui_kittest::wgpu::default_wgpu_setup(),
        eframe::egui_wgpu::RendererOptions::PREDICTABLE,
    );
    render::install(&render_state);
    let renderer = egui_kittest::wgpu::WgpuTestRenderer::from_render_state(render_state);

    let pixels_per_point = 2.0;
    let rect = egui::Rect::from_min_size(egui::pos2(20.0, 10.0), egui::vec2(60.0, 40.0));
    let camera = unit_flat_camera();
    let particle_at = [0.5, -0.5, 0.0];
    let data = frame(vec![Particle::new(particle_at, RED)], Vec::new(), camera);
    let shown = data.clone();
    let mut harness = egui_kittest::Harness::builder()
        .with_size(egui::vec2(100.0, 70.0))
        .with_pixels_per_point(pixels_per_point)
        .renderer(renderer)
        .build_ui(move |ui| {
            ui.painter().add(render::callback(rect, shown.clone()));
        });
    harness.run();
    let image = harness.render().expect("egui renders");

    let [x, y] = camera
        .project(particle_at, [rect.width(), rect.height()])
        .expect("in view");
    let centre_px = (rect.min + egui::vec2(x, y)) * pixels_per_point;
    let pixel = |p: egui::Pos2| image.get_pixel(p.x.floor() as u32, p.y.floor() as u32).0;
    assert_eq!(pixel(centre_px), [255, 0, 0, 255], "at {centre_px:?}");
    assert_ne!(pixel(egui::pos2(2.0, 2.0))[0], 255, "outside the particle");
}

/// Not a test: prints `bench_render` for 100 k and 1 M particles.
/// `cargo test --release --test render -- --ignored --nocapture bench_render_prints`
#[test]
#[ignore = "a benchmark: run on demand"]
fn bench_render_prints() {
    let lines = render::bench_render(&[0, 100_000, 1_000_000], 10).expect("bench runs");
    for line in lines {
        println!(
            "{:>9} points: {:8.1} frames/s static, {:8.1} frames/s streaming ({} frames, {})",
            line.points,
            line.static_frames_per_sec,
            line.streaming_frames_per_sec,
            line.frames,
            line.adapter
        );
    }
}

#[test]
fn bench_render_runs() {
    if gpu().is_none() {
        return;
    }
    let lines = render::bench_render(&[0, 1000], 2).expect("bench runs");
    assert_eq!(lines.len(), 2);
    for line in lines {
        assert_eq!(line.frames, 2);
        assert!(line.static_frames_per_sec > 0.0 && line.static_frames_per_sec.is_finite());
        assert!(line.streaming_frames_per_sec > 0.0);
    }
}
