//! The particle renderer: every WGSL file under `shaders/` validates with naga (no GPU), the
//! uniform's Rust mirror matches naga's layout, and, on whatever wgpu adapter exists (lavapipe
//! in CI), known particles and lines land on the pixels the CPU projection says, in their
//! colours, offscreen and through egui's paint callback, with both rasterisers, which agree
//! with each other pixel by pixel.
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
    Rasteriser, RenderError, RenderStyle, ViewMode,
};

const RED: [f32; 4] = [1.0, 0.0, 0.0, 1.0];
const GREEN: [f32; 4] = [0.0, 1.0, 0.0, 1.0];
const BLUE: [f32; 4] = [0.0, 0.0, 1.0, 1.0];
const WIDTH: u32 = 64;
const HEIGHT: u32 = 48;
/// Every pixel test runs with each.
const RASTERISERS: [Rasteriser; 2] = [Rasteriser::GpuQuads, Rasteriser::CpuSplat];

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

/// Every WGSL file under `shaders/` is wired into a pipeline (no file is edited in vain), and
/// each compiled-in source has the entry points its pipeline asks for by name.
#[test]
fn every_shader_file_feeds_a_pipeline_with_the_entry_points_it_names() {
    let compiled_in = [
        (
            "particles.wgsl",
            render::PARTICLES_WGSL,
            &["vs_main", "fs_main", "fs_main_linear_framebuffer"][..],
        ),
        (
            "lines.wgsl",
            render::LINES_WGSL,
            &["vs_main", "fs_main", "fs_main_linear_framebuffer"][..],
        ),
        (
            "splat_composite.wgsl",
            render::SPLAT_COMPOSITE_WGSL,
            &["vs_main", "fs_main"][..],
        ),
    ];
    for path in wgsl_files() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(
            compiled_in.iter().any(|(file, _, _)| *file == name),
            "shaders/{name} is not compiled into any pipeline"
        );
    }
    for (file, source, entry_points) in compiled_in {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|error| panic!("{file}: {}", error.emit_to_string(source)));
        let declared: Vec<&str> = module
            .entry_points
            .iter()
            .map(|entry| entry.name.as_str())
            .collect();
        for wanted in entry_points {
            assert!(
                declared.contains(wanted),
                "{file} lacks the entry point `{wanted}` its pipeline uses (it has {declared:?})"
            );
        }
    }
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

fn render_with(target: &mut Offscreen, frame: &FrameData, rasteriser: Rasteriser) -> Image {
    let gpu = gpu().expect("caller checked");
    let mut renderer = target.renderer(&gpu.device, rasteriser);
    let pixels = target
        .render(&gpu.device, &gpu.queue, &mut renderer, frame)
        .expect("render and read back");
    let [width, height] = target.size();
    assert_eq!(pixels.len(), (4 * width * height) as usize);
    Image { pixels, width }
}

fn render(frame: &FrameData, rasteriser: Rasteriser) -> Image {
    let gpu = gpu().expect("caller checked");
    let mut target = Offscreen::new(&gpu.device, WIDTH, HEIGHT).expect("offscreen target");
    render_with(&mut target, frame, rasteriser)
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
    // By hand: 24 px per unit, origin at (32, 24), y up.
    let red_px = camera.project(red_at, VIEWPORT).expect("in view");
    let green_px = camera.project(green_at, VIEWPORT).expect("in view");
    assert_eq!(red_px, [32.0, 24.0]);
    assert_eq!(green_px, [44.0, 18.0]);
    let data = frame(
        vec![Particle::new(red_at, RED), Particle::new(green_at, GREEN)],
        Vec::new(),
        camera,
    );
    for rasteriser in RASTERISERS {
        let image = render(&data, rasteriser);
        let what = format!("{rasteriser:?}");
        assert_eq!(image.at_point(red_px), [255, 0, 0, 255], "{what}");
        assert_eq!(image.at_point(green_px), [0, 255, 0, 255], "{what}");
        // Inside the radius (4.5 px) on each side, outside beyond it.
        assert_eq!(image.at(32 - 3, 24), [255, 0, 0, 255], "{what}");
        assert_eq!(image.at(32 + 2, 24 + 2), [255, 0, 0, 255], "{what}");
        assert_eq!(image.at(32 + 7, 24), BACKGROUND, "{what}");
        assert_eq!(image.at(32, 24 + 7), BACKGROUND, "{what}");
        // The disc is round: the quad's corner is empty.
        assert_eq!(image.at(32 + 4, 24 + 4), BACKGROUND, "{what}");
        // Background far from both.
        assert_eq!(image.at(2, 2), BACKGROUND, "{what}");
        assert_eq!(image.at(WIDTH - 1, HEIGHT - 1), BACKGROUND, "{what}");
    }
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
    data.style.point_size_px = 7.0;
    data.particles[0].size_scale = 2.5; // radius 8.75 px, centre at (32, 24) px
    // Coverage falls from 1 to 0 over the pixel either side of the radius, by smoothstep:
    // 1 - smoothstep(r - 0.5, r + 0.5, d) at each pixel centre (x + 0.5, 24.5).
    let expected = |x: u32| {
        let d = ((x as f32 + 0.5 - 32.0).powi(2) + 0.5f32.powi(2)).sqrt();
        let t = ((d - 8.25) / 1.0).clamp(0.0, 1.0);
        (255.0 * (1.0 - t * t * (3.0 - 2.0 * t))).round() as u8
    };
    let by_formula: Vec<u8> = (32..WIDTH).map(expected).collect();
    for rasteriser in RASTERISERS {
        let image = render(&data, rasteriser);
        let row: Vec<u8> = (32..WIDTH).map(|x| image.at(x, 24)[0]).collect();
        assert!(
            row.iter()
                .zip(&by_formula)
                .all(|(a, e)| a.abs_diff(*e) <= 2),
            "{rasteriser:?}\n{row:?}\n{by_formula:?}"
        );
        // The edge pixel is partly covered.
        assert!(row[8] > 0 && row[8] < 255, "{rasteriser:?} {row:?}");
    }
}

#[test]
fn opacity_blends_over_the_background() {
    if gpu().is_none() {
        return;
    }
    for rasteriser in RASTERISERS {
        let mut data = frame(
            vec![Particle::new([0.0; 3], [1.0, 1.0, 1.0, 1.0])],
            Vec::new(),
            unit_flat_camera(),
        );
        data.style.opacity = 0.5;
        let image = render(&data, rasteriser);
        assert_close(
            image.at(32, 24),
            [128, 128, 128, 255],
            1,
            &format!("half-opaque white over black, {rasteriser:?}"),
        );

        // Per-particle alpha multiplies the global opacity.
        data.particles[0].color[3] = 0.5;
        let image = render(&data, rasteriser);
        assert_close(
            image.at(32, 24),
            [64, 64, 64, 255],
            1,
            &format!("quarter-opaque white over black, {rasteriser:?}"),
        );
    }
}

#[test]
fn later_particles_draw_over_earlier_ones() {
    if gpu().is_none() {
        return;
    }
    let half_green = [0.0, 1.0, 0.0, 0.5];
    for rasteriser in RASTERISERS {
        // Half-transparent green over opaque red: (0.5, 0.5, 0) at alpha 1.
        let image = render(
            &frame(
                vec![
                    Particle::new([0.0; 3], RED),
                    Particle::new([0.0; 3], half_green),
                ],
                Vec::new(),
                unit_flat_camera(),
            ),
            rasteriser,
        );
        assert_close(
            image.at(32, 24),
            [128, 128, 0, 255],
            1,
            &format!("green over red, {rasteriser:?}"),
        );
        // The other way round, red covers green.
        let image = render(
            &frame(
                vec![
                    Particle::new([0.0; 3], half_green),
                    Particle::new([0.0; 3], RED),
                ],
                Vec::new(),
                unit_flat_camera(),
            ),
            rasteriser,
        );
        assert_eq!(image.at(32, 24), [255, 0, 0, 255], "{rasteriser:?}");
    }
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
    let data = frame(particles, lines, camera);
    for rasteriser in RASTERISERS {
        let image = render(&data, rasteriser);
        let what = format!("{rasteriser:?}");
        assert_eq!(image.at(5, 36), [0, 0, 255, 255], "{what}");
        assert_eq!(image.at(60, 36), [0, 0, 255, 255], "{what}");
        assert_eq!(image.at(5, 33), BACKGROUND, "{what}");
        assert_eq!(image.at(5, 39), BACKGROUND, "{what}");
        // The particle sits on the line and is drawn after it.
        assert_eq!(image.at(32, 36), [255, 0, 0, 255], "{what}");
    }
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

    let data = frame(
        vec![
            Particle::new(camera.target, GREEN),
            Particle::new(behind_eye, RED),
        ],
        Vec::new(),
        camera,
    );
    for rasteriser in RASTERISERS {
        let image = render(&data, rasteriser);
        assert_eq!(image.at_point(centre), [0, 255, 0, 255], "{rasteriser:?}");
        let red_pixels = image.pixels.chunks_exact(4).filter(|px| px[0] > 0).count();
        assert_eq!(
            red_pixels, 0,
            "a particle behind the eye is not drawn, {rasteriser:?}"
        );
    }
}

#[test]
fn empty_and_hidden_frames_are_background() {
    let Some(gpu) = gpu() else {
        return;
    };
    for rasteriser in RASTERISERS {
        let what = format!("{rasteriser:?}");
        let image = render(
            &frame(Vec::new(), Vec::new(), Camera::default()),
            rasteriser,
        );
        assert!(image.all_equal(BACKGROUND), "{what}");

        let mut hidden = Particle::new([0.0; 3], RED);
        hidden.size_scale = 0.0;
        let image = render(
            &frame(vec![hidden], Vec::new(), unit_flat_camera()),
            rasteriser,
        );
        assert!(image.all_equal(BACKGROUND), "{what}");

        // A clear colour of one's own.
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
            rasteriser,
        );
        assert!(image.all_equal([0, 0, 255, 255]), "{what}");
    }
}

#[test]
fn buffers_grow_and_new_geometry_replaces_the_old() {
    let Some(gpu) = gpu() else {
        return;
    };
    for rasteriser in RASTERISERS {
        let what = format!("{rasteriser:?}");
        let mut target = Offscreen::new(&gpu.device, WIDTH, HEIGHT).expect("target");
        let mut renderer = target.renderer(&gpu.device, rasteriser);
        assert_eq!(renderer.rasteriser(), rasteriser);
        let camera = unit_flat_camera();

        // 5000 particles (more than the initial 1024) off to the side, the last one in the
        // centre.
        let mut particles = vec![Particle::new([10.0, 10.0, 0.0], RED); 5000];
        particles[4999] = Particle::new([0.0; 3], GREEN);
        let data = frame(particles, Vec::new(), camera);
        let counts = renderer.prepare(&gpu.device, &gpu.queue, &data, target.size());
        assert_eq!(counts.particles, 5000, "{what}");
        let pixels = target
            .render(&gpu.device, &gpu.queue, &mut renderer, &data)
            .expect("render");
        let image = Image {
            pixels,
            width: WIDTH,
        };
        assert_eq!(image.at(32, 24), [0, 255, 0, 255], "{what}");

        // Same geometry, moved camera: the view follows.
        let mut moved = data.clone();
        moved.camera.pan(-10.0, 0.0, HEIGHT as f32);
        let image = Image {
            pixels: target
                .render(&gpu.device, &gpu.queue, &mut renderer, &moved)
                .expect("render"),
            width: WIDTH,
        };
        assert_eq!(image.at(22, 24), [0, 255, 0, 255], "{what}");
        assert_eq!(image.at(32, 24), BACKGROUND, "{what}");

        // New geometry, fewer particles: replaces the old.
        let smaller = frame(vec![Particle::new([0.0; 3], BLUE)], Vec::new(), camera);
        let image = Image {
            pixels: target
                .render(&gpu.device, &gpu.queue, &mut renderer, &smaller)
                .expect("render"),
            width: WIDTH,
        };
        assert_eq!(image.at(32, 24), [0, 0, 255, 255], "{what}");
        assert_eq!(
            image.pixels.chunks_exact(4).filter(|px| px[1] > 0).count(),
            0,
            "no green left over, {what}"
        );
    }
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
    for rasteriser in RASTERISERS {
        for (format, samples) in [
            (wgpu::TextureFormat::Rgba8Unorm, 1),
            (wgpu::TextureFormat::Rgba8Unorm, 4),
            (wgpu::TextureFormat::Rgba8UnormSrgb, 1),
            (wgpu::TextureFormat::Rgba8UnormSrgb, 4),
        ] {
            let mut target = Offscreen::with_format(&gpu.device, WIDTH, HEIGHT, format, samples)
                .expect("target");
            let image = render_with(&mut target, &data, rasteriser);
            let what = format!("{format:?} x{samples}, {rasteriser:?}");
            assert_eq!(image.at(32, 24), [255, 0, 0, 255], "{what}");
            // Gamma-space 0.5 is 128 in both: an sRGB target gets it decoded, then encodes it.
            assert_close(image.at(44, 18), [128, 128, 128, 255], 1, &what);
            assert_eq!(image.at(2, 2), BACKGROUND, "{what}");
        }
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

/// [`Rasteriser::QuadsThenSplat`] (a software adapter's) switches on the particle count, and
/// what it draws is right either side.
#[test]
fn quads_then_splat_switches_at_the_threshold() {
    let Some(gpu) = gpu() else {
        return;
    };
    let mut target = Offscreen::new(&gpu.device, WIDTH, HEIGHT).expect("target");
    let mut renderer = target.renderer(&gpu.device, Rasteriser::QuadsThenSplat);
    assert_eq!(renderer.rasteriser(), Rasteriser::QuadsThenSplat);
    let many = render::CPU_SPLAT_FROM_PARTICLES;
    for (count, drawn_with) in [
        (1, Rasteriser::GpuQuads),
        (many - 1, Rasteriser::GpuQuads),
        (many, Rasteriser::CpuSplat),
        (1, Rasteriser::GpuQuads),
    ] {
        // All but the last far off to the side; the last, green, in the centre.
        let mut particles = vec![Particle::new([10.0, 10.0, 0.0], RED); count];
        particles[count - 1] = Particle::new([0.0; 3], GREEN);
        let data = frame(particles, Vec::new(), unit_flat_camera());
        let image = Image {
            pixels: target
                .render(&gpu.device, &gpu.queue, &mut renderer, &data)
                .expect("render"),
            width: WIDTH,
        };
        assert_eq!(renderer.drawn_with(), drawn_with, "{count}");
        assert_eq!(image.at(32, 24), [0, 255, 0, 255], "{count}");
        assert_eq!(image.at(32 + 7, 24), BACKGROUND, "{count}");
    }
}

/// The two rasterisers draw the same image: a seeded cloud of 3000 particles of random size,
/// colour and alpha, many overlapping, with the orbit camera, on a plain and an sRGB target.
/// Not bit for bit: the GPU rounds its 8-bit target after each of the k particles covering a
/// pixel (lavapipe's unorm blending is within 1 of exact), and an error once made is only
/// scaled by the later particles' (1 - alpha) <= 1, while the splatter blends in f32 and rounds
/// once. So each channel is within k of the other path's, and equal where no particle reaches.
#[test]
fn both_rasterisers_draw_the_same_image() {
    let Some(gpu) = gpu() else {
        return;
    };
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = move || {
        // xorshift64*: enough for test data.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32
    };
    let particles: Vec<Particle> = (0..3000)
        .map(|_| {
            let position = [0.0; 3].map(|_: f32| 2.0 * random() - 1.0);
            let color = [random(), random(), random(), 0.3 + 0.7 * random()];
            Particle::new(position, color).with_size_scale(0.2 + 1.8 * random())
        })
        .collect();
    let mut data = frame(particles, Vec::new(), Camera::new(ViewMode::Orbit3d));
    data.style = RenderStyle {
        point_size_px: 6.0,
        opacity: 0.85,
    };
    let (width, height) = (160, 120);
    // k: how many discs reach each pixel centre (coverage is 0 from radius + 0.5 on).
    let mut reaching = vec![0u8; (width * height) as usize];
    for particle in &data.particles {
        let viewport = [width as f32, height as f32];
        let Some([x, y]) = data.camera.project(particle.position, viewport) else {
            continue;
        };
        let reach = 0.5 * data.style.point_size_px * particle.size_scale + 0.5;
        for (i, k) in reaching.iter_mut().enumerate() {
            let centre = [
                (i as u32 % width) as f32 + 0.5,
                (i as u32 / width) as f32 + 0.5,
            ];
            if (centre[0] - x).hypot(centre[1] - y) < reach {
                *k = k.saturating_add(1);
            }
        }
    }
    assert!(reaching.iter().any(|&k| k >= 4), "the cloud overlaps");
    for format in [
        wgpu::TextureFormat::Rgba8Unorm,
        wgpu::TextureFormat::Rgba8UnormSrgb,
    ] {
        let mut target =
            Offscreen::with_format(&gpu.device, width, height, format, 1).expect("target");
        let quads = render_with(&mut target, &data, Rasteriser::GpuQuads);
        let splat = render_with(&mut target, &data, Rasteriser::CpuSplat);
        let mut histogram = [0usize; 4];
        for (i, (a, b)) in quads
            .pixels
            .chunks_exact(4)
            .zip(splat.pixels.chunks_exact(4))
            .enumerate()
        {
            let difference = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max();
            let difference = difference.unwrap_or(0);
            let at = (i as u32 % width, i as u32 / width);
            assert!(
                difference <= reaching[i],
                "{format:?} at {at:?}: {a:?} and {b:?}, {} particles",
                reaching[i]
            );
            histogram[usize::from(difference.min(3))] += 1;
        }
        eprintln!("{format:?}: pixels differing by 0, 1, 2, 3+: {histogram:?}");
    }
}

/// Through egui: `install` into egui-wgpu's callback resources, a `callback` shape in a
/// rectangle that is not the whole screen, at 2 pixels per point; egui's own renderer runs
/// `prepare` and `paint`.
#[test]
fn egui_paint_callback_draws_in_its_rectangle() {
    if gpu().is_none() {
        return;
    }
    for rasteriser in RASTERISERS {
        let render_state = egui_kittest::wgpu::create_render_state(
            egui_kittest::wgpu::default_wgpu_setup(),
            eframe::egui_wgpu::RendererOptions::PREDICTABLE,
        );
        render::install_with(&render_state, 1, rasteriser);
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
        let what = format!("at {centre_px:?}, {rasteriser:?}");
        assert_eq!(pixel(centre_px), [255, 0, 0, 255], "{what}");
        // The disc's radius is 4.5 px: 4 px off the centre is inside, 6 px outside.
        assert_eq!(
            pixel(centre_px + egui::vec2(-4.0, 0.0)),
            [255, 0, 0, 255],
            "{what}"
        );
        assert_ne!(pixel(centre_px + egui::vec2(6.0, 0.0))[0], 255, "{what}");
        assert_ne!(
            pixel(egui::pos2(2.0, 2.0))[0],
            255,
            "outside the particle, {what}"
        );
    }
}

/// Not a test: prints `bench_render` for 0, 100 k and 1 M particles.
/// `cargo test --release --test render -- --ignored --nocapture bench_render_prints`
#[test]
#[ignore = "a benchmark: run on demand"]
fn bench_render_prints() {
    let lines = render::bench_render(&[0, 100_000, 1_000_000], 10).expect("bench runs");
    for line in lines {
        let reference = line
            .gpu_quads_static_frames_per_sec
            .map(|quads| {
                format!(
                    ", GpuQuads {quads:.1} static (x{:.2})",
                    line.static_frames_per_sec / quads
                )
            })
            .unwrap_or_default();
        println!(
            "{:>9} points of {} px: {:8.1} frames/s static, {:8.1} frames/s streaming, {:?}{} \
             ({} frames, {})",
            line.points,
            line.point_size_px,
            line.static_frames_per_sec,
            line.streaming_frames_per_sec,
            line.rasteriser,
            reference,
            line.frames,
            line.adapter
        );
    }
}

#[test]
fn bench_render_runs() {
    let Some(gpu) = gpu() else {
        return;
    };
    let counts = [0, 1000, render::CPU_SPLAT_FROM_PARTICLES];
    let lines = render::bench_render(&counts, 2).expect("bench runs");
    assert_eq!(lines.len(), 3);
    for (line, count) in lines.into_iter().zip(counts) {
        assert_eq!(line.points, count);
        assert_eq!(line.frames, 2);
        assert!(line.static_frames_per_sec > 0.0 && line.static_frames_per_sec.is_finite());
        assert!(line.streaming_frames_per_sec > 0.0);
        assert_eq!(line.point_size_px, RenderStyle::default().point_size_px);
        let splatted = gpu.rasteriser().splats(count);
        assert_eq!(line.rasteriser == Rasteriser::CpuSplat, splatted, "{count}");
        assert_eq!(line.gpu_quads_static_frames_per_sec.is_some(), splatted);
    }
}
