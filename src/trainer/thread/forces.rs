//! The forces on the displayed points, for the view's arrows (`method::arrows`).

use crate::method::arrows;
use crate::projection::Framer;
use crate::seed::{self, Stream};
use crate::session::Run;
use crate::trainer::messages::Arrows;

/// The forces on the displayed points (`rows` of `run`, at `step`) for the view's arrows, in
/// the basis of the frame `framer` just made, and their shares.
pub(super) fn arrows_of(
    framer: &Framer,
    run: &dyn Run,
    rows: &[Vec<f32>; 3],
    d: usize,
    step: u64,
) -> (Arrows, [f64; 3]) {
    let settings = run.settings();
    let n = rows[0].len().checked_div(d).unwrap_or(0);
    let kicks = arrows::display_kicks(
        &mut seed::indexed(settings.seed(), Stream::DisplayKicks, step),
        n,
        d,
    );
    let forces = arrows::particle_forces(rows, d, &settings.dynamics(), &kicks);
    let vectors = forces
        .forces
        .each_ref()
        .map(|f| framer.project_directions(&f[..n * d], d));
    (Arrows { step, vectors }, forces.shares())
}
