"""Real or synthetic?: a visual Turing test of real held-out cells and generated ones."""

import streamlit as st

from malgan import artifacts, tables, turing
from malgan.app import cells, controls, frame, loading
from malgan.app import turing as game

KEYS = ("ros_model", "ros_cells", "ros_seed", "ros_study")
ENABLE_HELP = (
    "These models ship **no real cells**, so there is nothing to compare the generated cells "
    "with. A release trained on public data can add a sample of real cells of its held-out "
    "patients (at most 512):\n\n"
    "```bash\n"
    "python -m train.real_sample --data /path/to/cell_images --out exported --n 256\n"
    "```\n\n"
    "or train with `python -m train.pipeline ... --real-sample 256`. It is off by default, so "
    "that models trained on private scans never ship a patient's cell."
)

frame.page_intro(
    "Is this cell real or generated? Each cell is a real cell of a held-out patient or a "
    "generated one, with equal chance, of a class drawn at random. Answer with the buttons or "
    "the arrow keys (← real, → synthetic). The seed is in the link: whoever opens it gets the "
    "same cells in the same order.",
)

# Controls, seeded from the URL.
top = st.columns([3, 2, 2, 2], vertical_alignment="bottom")
model = frame.choose_generator("ros_model", top[0], purpose="test")
controls.url_choice(
    "ros_cells", str(turing.DEFAULT_ROUND_SIZE), [str(n) for n in turing.ROUND_SIZES]
)
controls.url_int("ros_seed", frame.DEFAULT_SEED, 0, controls.MAX_SEED)
controls.url_value("ros_study", False, lambda s: s.strip().lower() in ("1", "true", "yes", "on"))
top[1].radio(
    "Cells per round", [str(n) for n in turing.ROUND_SIZES], horizontal=True, key="ros_cells"
)
controls.seed_input(
    "ros_seed",
    top[2],
    label="Round (seed)",
    help="The same seed gives the same cells in the same order.",
)
top[3].button("🎲 New round", on_click=controls.randomise_seed, args=("ros_seed",))
st.toggle(
    "Study mode",
    key="ros_study",
    help="Hides the score until the end of the round and offers the answers as a CSV "
    "(cell id, truth, answer, time to answer), to pool the rounds of several people.",
)
controls.sync_url(*KEYS)

exported = artifacts.exported_dir()
metrics_data = loading.metrics()
c2st = tables.c2st_figures(metrics_data, model)
sample = game.load_real_sample(exported)
if sample is None:
    st.info(ENABLE_HELP, icon="ℹ️")
    if c2st:
        st.subheader("The automatic test")
        st.table(tables.c2st_rows(metrics_data, model))
    st.stop()

frame.require_generator(model)
seed, size = int(st.session_state["ros_seed"]), int(st.session_state["ros_cells"])
study = bool(st.session_state["ros_study"])
questions = turing.draw_round(seed, size, sample.labels)
patients = sample.provenance.get("patients")
st.caption(
    f"Real cells: {len(sample)} cells of the "
    + (f"{len(patients)} " if isinstance(patients, list) else "")
    + "held-out (test) patients, never seen in training · generated cells: "
    + loading.generator_choices().get(model, model)
)
images = game.round_cells(exported, model, seed, size, sample)
state = game.round_state(seed, size, model)

# The question.
if not state.finished:
    index = state.current
    done = len(state.answers)
    tally = turing.score(questions, state.answers)[-1]
    progress = f"Cell **{index + 1}** of {size}"
    if not study and done:
        progress += f" · score **{tally.correct} / {done}** ({tables.percent(tally.accuracy)})"
    elif study:
        progress += " · study mode: the score comes at the end"
    st.markdown(progress)
    st.progress(done / size)
    left, right = st.columns([1, 3])
    cells.show_cells(images[index], left)
    with right:
        game.answer_buttons(state, index)
    st.stop()

# The end of the round.
tallies = turing.score(questions, state.answers)
overall = tallies[-1]
st.subheader(f"You got {overall.correct} of {overall.answered} right")
st.markdown(
    "**50% means nobody can tell** real from generated cells: a score near 50%, with an "
    "interval that includes it, means these generated cells pass for real ones. For "
    "comparison, 10 haematologists scored 52.3% on diffusion-generated blood cells "
    "(CytoDiffusion, 2024)."
)
st.table(game.score_rows(tallies, c2st))
if c2st:
    st.caption(
        "C2ST: a logistic regression on the classifier's features, cross-validated, telling "
        "real cells of held-out patients from generated ones (50%: it cannot tell). The "
        "reference puts real cells of other patients in place of the generated ones, at the "
        "same number of cells: two groups of patients differ too."
    )
else:
    st.caption("The automatic test (C2ST) is not measured for these models.")

wrong = turing.mistakes(questions, state.answers)
if wrong:
    st.subheader(f"The {tables.counted(len(wrong), 'cell')} you got wrong")
    with cells.spaced_images("ros_wrong"):
        cells.show_cells(
            images[[q.index for q in wrong]],
            caption=[game.question_caption(q, state.answers[q.index]) for q in wrong],
        )
else:
    st.success("No cell answered wrong.")

buttons = st.columns([2, 2, 3])
buttons[0].button("↺ Play this round again", on_click=game.restart_round)
buttons[1].button("🎲 Next round", on_click=controls.randomise_seed, args=("ros_seed",), key="next")
buttons[2].download_button(
    "⬇️ Answers (CSV)",
    turing.csv_text(questions, state, sample.cell_ids),
    file_name=f"real_or_synthetic_{model}_seed{seed}_{size}.csv",
    mime="text/csv",
    type="primary" if study else "secondary",
)
