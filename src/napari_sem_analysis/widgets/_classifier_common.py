"""What the object and tile classifier widgets share: class colours, the CV report, model files, recording."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import Container, FileEdit, PushButton

from .._validation import SEMAnalysisError
from ._base import StepCall
from ._common import notify_error, notify_info

_CLASS_COLORS = [
    (0.12, 0.47, 0.71, 1.0),  # blue
    (1.00, 0.50, 0.05, 1.0),  # orange
    (0.84, 0.15, 0.16, 1.0),  # red
    (0.17, 0.63, 0.17, 1.0),  # green
    (0.58, 0.40, 0.74, 1.0),  # purple
    (0.55, 0.34, 0.29, 1.0),  # brown
    (0.89, 0.47, 0.76, 1.0),  # pink
    (0.74, 0.74, 0.13, 1.0),  # olive
    (0.09, 0.75, 0.81, 1.0),  # cyan
    (0.50, 0.50, 0.50, 1.0),  # grey
]

_MODELS = ["random_forest", "extra_trees", "gradient_boosting", "logistic_regression"]
_EXAMPLE_PREFIX = "examples: "
_MODEL_FILTER = "*.semclf"
_THREAD = "sem-classifier-work"  # the training/prediction thread's name


def class_color(i: int):
    """RGBA colour of class ``i`` (the same in every classifier layer)."""
    return _CLASS_COLORS[i % len(_CLASS_COLORS)]


def _parse_class_names(text: str) -> list[str]:
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if len(names) < 2:
        raise SEMAnalysisError("give at least two class names, separated by commas")
    if len(set(names)) != len(names):
        raise SEMAnalysisError(f"class names must be distinct, got {names}")
    return names


def _prepare_torch():
    """Import torch in the GUI thread before a worker uses it.

    A first import of torch's extension modules from a worker thread is
    avoided; the CNN trainer itself never touches ``torch.optim`` (whose
    compiler-stack imports can crash a process with an LLVM-based OpenGL
    driver loaded).
    """
    import torch  # noqa: F401
    import torch.nn  # noqa: F401
    import torch.nn.functional  # noqa: F401


def _figure_canvas(container: Container):
    """A matplotlib canvas added to ``container``'s Qt layout (for confusion matrices)."""
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.6, 3.0), dpi=90)
    canvas = FigureCanvasQTAgg(fig)
    canvas.setMinimumHeight(260)
    container.native.layout().addWidget(canvas)
    return canvas


def _show_confusion(canvas, result):
    from ..classification import confusion_matrix_figure

    fig = canvas.figure
    fig.clear()
    ax = fig.add_subplot(1, 1, 1)
    confusion_matrix_figure(
        result.confusion_matrix, result.class_names, ax=ax, title=f"CV accuracy {result.accuracy:.2f}"
    )
    canvas.draw_idle()


def _cv_text(result) -> str:
    kind = "grouped " if result.grouped else ""
    lines = [
        f"{result.n_splits}-fold {kind}CV accuracy: {result.accuracy:.3f} (balanced {result.balanced_accuracy:.3f})"
    ]
    for name, row in result.per_class.iterrows():
        lines.append(
            f"  {name}: P {row['precision']:.2f}  R {row['recall']:.2f}  F1 {row['f1']:.2f}  n={int(row['support'])}"
        )
    return "\n".join(lines)


class _StepRecorder:
    """Records a classifier widget's prediction as a workflow step.

    A recipe step names the model *file*, so the step is recorded once the
    classifier that predicted is saved (or was loaded): at prediction time
    when the file is known, else when the user saves the model.
    """

    def __init__(self, widget):
        self.widget = widget
        self.model_file: Path | None = None  # the file holding the current classifier
        self.pending: tuple | None = None  # (classifier, function, params, inputs, output) not yet recorded
        self.told = False

    def trained(self):
        """A newly trained classifier is in no file yet."""
        self.model_file = None
        self.pending = None

    def stored(self, path, classifier):
        """The current classifier is in ``path`` (saved or loaded)."""
        self.model_file = Path(path).resolve()
        if self.pending is not None and self.pending[0] is classifier:
            self._record(*self.pending[1:])
            self.pending = None

    def predicted(self, classifier, function, params, inputs, output):
        if self.model_file is not None and self.widget.classifier is classifier:
            self._record(function, params, inputs, output)
            return
        self.pending = (classifier, function, params, inputs, output)
        if not self.told:
            self.told = True
            notify_info("save the model to add this prediction to the workflow (it names the model file)")

    def _record(self, function, params, inputs, output):
        self.widget.record(StepCall(function, {"model": str(self.model_file), **params}, inputs, output))


def _save_classifier(classifier, value):
    """Save a trained classifier to the file named in a path widget; the path, or None."""
    if classifier is None:
        notify_error("train or load a classifier first")
        return None
    path = Path(str(value))
    if not str(value) or path.is_dir():
        notify_error("choose a file name to save the model to")
        return None
    try:
        out = classifier.save(path)
    except (SEMAnalysisError, OSError) as exc:
        notify_error(exc)
        return None
    notify_info(f"model saved to {out}")
    return out


class ModelFiles:
    """The *model file* / *load file* boxes of a classifier widget, with the Save and Load handlers.

    The widget has ``classifier``, ``_recorder`` (:class:`_StepRecorder`) and
    ``_report``, and defines ``_load_file(path)`` (its classifier class's
    ``load``) and ``_show_loaded(classifier)`` (puts the loaded classifier's
    settings into its boxes; returns a short description for the report line).
    """

    def model_file_widgets(self) -> list:
        """The boxes and buttons (connected), to add to the widget."""
        self._save_path = FileEdit(label="model file", mode="w", filter=_MODEL_FILTER)
        self._save = PushButton(text="Save model")
        self._load_path = FileEdit(label="load file", mode="r", filter=_MODEL_FILTER)
        self._load = PushButton(text="Load model")
        self._save.changed.connect(self.save_model)
        self._load.changed.connect(self.load_model)
        return [self._save_path, self._save, self._load_path, self._load]

    def has_classifier(self) -> bool:
        """Whether a classifier is trained or loaded (else the user is told to make one)."""
        if self.classifier is None:
            notify_error("train or load a classifier first")
            return False
        return True

    def save_model(self, _event=None):
        """Save the classifier to the *model file*; the path written, or None (with a notification)."""
        out = _save_classifier(self.classifier, self._save_path.value)
        if out is not None:
            self._recorder.stored(out, self.classifier)
        return out

    def load_model(self, _event=None):
        """Load the classifier in the *load file*; it, or None (with a notification)."""
        path = Path(str(self._load_path.value))
        try:
            clf = self._load_file(path)
        except SEMAnalysisError as exc:
            notify_error(exc)
            return None
        self.classifier = clf
        self._recorder.trained()
        self._recorder.stored(path, clf)
        described = self._show_loaded(clf)
        self._report.value = f"loaded {path.name}: {described}, classes {', '.join(clf.class_names)}"
        return clf
