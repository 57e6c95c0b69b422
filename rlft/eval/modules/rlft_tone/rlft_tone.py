"""rlft's house-tone scorer (Harbor Goods', the built-in task's) as an `evaluate` module, loadable offline:

    metric = evaluate.load(rlft.eval.modules.path("rlft_tone"))
    metric.compute(predictions=["Thanks! ..."], customer=["My lamp arrived broken."])
"""

import datasets
import evaluate

from rlft.tasks.harbor import tone


class RlftTone(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Mean house-tone score (rlft/tasks/harbor/tone.py rules) and the share of impolite replies.",
            citation="", inputs_description="predictions: list[str] replies; customer: list[str] messages",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "customer": datasets.Value("string")}))

    def _compute(self, predictions, customer):
        scores = [tone.tone_score(c, p) for c, p in zip(customer, predictions)]
        rude = [tone.impolite(c, p) for c, p in zip(customer, predictions)]
        return {"tone_score": sum(scores) / len(scores), "impolite_rate": sum(rude) / len(rude)}
