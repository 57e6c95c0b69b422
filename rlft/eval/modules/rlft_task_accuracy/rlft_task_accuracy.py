"""rlft's task accuracy as an `evaluate` module, loadable offline:

    import evaluate
    from rlft.eval.modules import path
    metric = evaluate.load(path("rlft_task_accuracy"))
    metric.compute(predictions=["..."], required=[["30 days"]], forbidden=[["whatever"]])
"""

import datasets
import evaluate

from rlft.eval import metrics


class RlftTaskAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Share of responses where every required regex matches and no forbidden one does, with "
                        "a 95% Wilson interval, and mean fact recall (share of required regexes that match).",
            citation="", inputs_description="predictions: list[str]; required, forbidden: list[list[str]]",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "required": datasets.Sequence(datasets.Value("string")),
                                        "forbidden": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, required, forbidden):
        checks = [metrics.check_task(p, r, f) for p, r, f in zip(predictions, required, forbidden)]
        correct = sum(ok for ok, _ in checks)
        return {"task_accuracy": correct / len(checks), "task_accuracy_ci": metrics.wilson_interval(correct, len(checks)),
                "fact_recall": sum(r for _, r in checks) / len(checks)}
