"""The run folder: what a run writes (``files``, ``manifest``, ``writing``) and the run
object every command reads it through (``open_run``).

    run = open_run("runs/demo"); model = run.model(); train_data, test_data = run.data()
"""

from perceptreg.core.lazy import lazy_exports

# imported on first use (core/lazy.py): `import perceptreg.runs` stays free of torch
__getattr__, __dir__ = lazy_exports(__name__, {
    "perceptreg.storage.fileio": ("check_output_path",),
    "perceptreg.runs.kinds": ("KINDS", "kind_of"),
    "perceptreg.runs.outputs": ("check_output_file", "check_output_folder", "check_writable"),
    "perceptreg.runs.files": ("ATTACHED_FORMAT", "ATTACK", "ATTACK_CONVERGENCE", "ATTACK_FROM_NOISE",
        "ATTACK_METRICS", "ATTACK_ROC", "CONFIG", "INTERPOLATION_CHANGE", "INTERPOLATION_FLIP", "INTERPOLATION_GRID",
        "INTERPOLATION_METRICS", "LAYERS_ATTACK_PNG", "LAYERS_JSON", "LAYERS_PNG", "METRICS", "MODEL",
        "MODEL_FORMAT", "MODEL_META", "NOISE_METRICS", "PERCEPTION", "PIXEL_PROBES", "REPORT", "STATE", "STATE_META",
        "SWEEP_ATTENTION", "SWEEP_CONFIG", "SWEEP_JSON", "SWEEP_MD", "SWEEP_PERCEPTION", "SWEEP_PROBES",
        "append_metrics", "for_layer", "read_config", "read_metrics"),
    "perceptreg.runs.manifest": ("completed_epochs",),
    "perceptreg.runs.run": ("AttachedRun", "Run", "TrainedRun", "open_run"),
    "perceptreg.runs.saving": ("save_run",),
    "perceptreg.runs.writing": ("check_writable_for_training", "history_up_to", "load_state", "prepare", "prepare_attached",
        "publish_model", "save_attached", "save_checkpoint", "settle"),
})

__all__ = ["CONFIG", "METRICS", "MODEL", "MODEL_META", "STATE", "STATE_META", "MODEL_FORMAT", "ATTACHED_FORMAT", "PERCEPTION", "REPORT", "ATTACK", "ATTACK_FROM_NOISE", "ATTACK_METRICS", "NOISE_METRICS", "ATTACK_ROC", "ATTACK_CONVERGENCE", "INTERPOLATION_METRICS", "INTERPOLATION_FLIP", "INTERPOLATION_CHANGE", "INTERPOLATION_GRID", "LAYERS_JSON", "LAYERS_PNG", "LAYERS_ATTACK_PNG", "SWEEP_CONFIG", "SWEEP_JSON", "PIXEL_PROBES", "SWEEP_MD", "SWEEP_PERCEPTION", "SWEEP_ATTENTION", "SWEEP_PROBES", "read_config", "read_metrics", "for_layer",
           "check_output_path", "check_output_file", "check_output_folder", "save_run", "KINDS", "check_writable", "check_writable_for_training", "kind_of", "settle", "AttachedRun", "Run", "TrainedRun", "open_run", "completed_epochs", "append_metrics", "history_up_to",
           "load_state", "prepare", "prepare_attached", "publish_model", "save_attached", "save_checkpoint"]
