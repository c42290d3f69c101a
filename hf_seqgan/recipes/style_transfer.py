"""Sentiment (style) transfer from two unpaired style corpora with `CycleTrainer`, evaluated by
transfer accuracy under a classifier trained here, BLEU to the source (content kept) and fluency
under the cycle's discriminator.

Training follows Lample et al. 2019 ("Multiple-Attribute Text Rewriting",
https://openreview.net/forum?id=H1g2NhC5KQ): one shared model told the wanted style by a tag forced as
its first output token (``<style0>``/``<style1>``), denoising auto-encoding and on-the-fly
back-translation between the styles, plus a discriminator on the target style (adversarial term)
that also measures fluency. ``--shared_model false`` trains two models instead (G: style 0 -> 1, R:
1 -> 0). Evaluation, on the validation sentences of each style transferred into the other:

- transfer accuracy: the share of outputs that a classifier (a tiny BERT trained here on the two
  training corpora) assigns to the wanted style; its accuracy on real validation text is reported;
- BLEU to the source (sacreBLEU): how much content is kept (copying the source scores 100 with
  almost no transfer: its row is the floor on accuracy);
- BLEU to a human reference where the data has one (the synthetic corpus does);
- fluency: the discriminator's mean p(real style-1 text) for outputs in style 1 (and, with
  ``--source_adversarial_weight``, the style-0 discriminator's for outputs in style 0).

With no arguments it runs its embedded default, which needs no network: synthetic Yelp-like review
sentences from `hf_seqgan.synthetic`, a tokenizer trained on them and a tiny BART.

Usage:

    python examples/run_style_transfer.py                                 # embedded default
    D=../shared/data/yelp                                                 # Yelp: 0 negative, 1 positive
    python examples/run_style_transfer.py --train_file $D/train.0 --train_target_file $D/train.1 \\
        --validation_file $D/valid.0 --validation_target_file $D/valid.1 --max_train_samples 50000
    python examples/run_style_transfer.py --train_file reviews.json --text_column text --label_column label
    python examples/run_style_transfer.py --shared_model false --adversarial_weight 0
    python examples/run_style_transfer.py ... --discriminator_type classifier --adversarial_update gumbel \
        --adversarial_weight 1 --source_adversarial_weight 1 --training_no_repeat_ngram_size 2 --no_repeat_ngram_size 2  # a D per style
    python examples/run_style_transfer.py args.json
    # a held-out file: --test_file (style 0 -> 1), --test_target_file (style 1 -> 0), --test_reference_file (human transfers of --test_file)
    python examples/run_style_transfer.py ... --do_predict --test_file $D/valid.0 --test_target_file $D/valid.1

Every evaluation also reports the share of distinct outputs and the loss of the model's outputs
with the sources shuffled across rows against the true sources, and warns when the model emits one
output or ignores its input.
"""

import logging
from dataclasses import dataclass, field

import torch

from ..discriminators import build_default_discriminator
from .. import recipes
from ..metrics import load_metric
from ..synthetic import style_corpora

logger = logging.getLogger("run_style_transfer")

DEFAULTS = recipes.training_defaults(
    "run_style_transfer", max_steps=200, shared_model=True, x_token="<style0>", y_token="<style1>", direction_token_position="decoder",
    denoising_weight="1.0", backtranslation_weight="1.0", reconstruction_weight="0.0", adversarial_weight="0.5",
)


@dataclass
class StyleArguments(recipes.DataArguments):
    text_column: str = field(default="text", metadata={"help": "Column holding the sentence (json/csv data)."})
    label_column: str = field(default="label", metadata={"help": "Column holding the style (0 or 1) when both styles are in one file."})
    reference_column: str = field(default="transferred", metadata={"help": "Column holding a human transfer of the validation sentence, where the data has one."})
    style_names: str = field(default="negative,positive", metadata={"help": "Names of style 0 and style 1, for the outputs."})
    classifier_steps: int = field(default=200, metadata={"help": "Training steps of the evaluation classifier."})
    max_source_length: int = field(default=32, metadata={"help": "Tokens kept of a sentence."})
    max_target_length: int = field(default=32, metadata={"help": "Tokens generated at most."})
    synthetic_train_size: int = field(default=4000, metadata={"help": "Synthetic sentences (half of each style) when no data is given."})
    synthetic_eval_size: int = field(default=100, metadata={"help": "Synthetic validation sentences when no data is given."})

    def __post_init__(self):
        super().__post_init__()
        if len(self.style_names.split(",")) != 2:
            raise ValueError(f"--style_names takes two names separated by a comma, got {self.style_names!r}.")


def references(dataset, args, style: int):
    """The human transfers of the validation sentences of ``style``, or None when the data has none."""
    if dataset is None or args.reference_column not in dataset.column_names or args.label_column not in dataset.column_names:
        return None
    return [r for r, y in zip(dataset[args.reference_column], dataset[args.label_column]) if int(y) == style]


def main(argv=None):
    # 1. Arguments: model, data and CycleConfig (every field of the trainer is an option), 2. logging and seed.
    model_args, data_args, training_args = recipes.parse_recipe_args(StyleArguments, argv, DEFAULTS, method="cycle", logger_name=logger.name)

    # 3. Data: two unpaired corpora (style 0 = X, style 1 = Y), for training and for validation.
    col, names = data_args.text_column, data_args.style_names.split(",")
    corpus = recipes.load_corpus(data_args, training_args, source_column=col, target_column=col, synthetic=style_corpora, synthetic_what="review sentiment",
                         paired_train=False, paired_validation=False, column_flags={col: "--text_column"})
    x_train, y_train = corpus.unpaired(col, col, label_column=data_args.label_column)
    x_valid, y_valid = corpus.unpaired(col, col, split="validation", label_column=data_args.label_column)
    if not (x_valid and y_valid):
        raise ValueError("Style transfer is evaluated on validation sentences of both styles: give --validation_file and --validation_target_file "
                         "(or a validation file with a --label_column).")
    logger.info("Training: %d %s and %d %s sentences", len(x_train), names[0], len(y_train), names[1])

    # 4. Model and tokenizer (the style tags added to a given tokenizer if it lacks them).
    tags = [t for t in (training_args.x_token, training_args.y_token) if t]
    model, tokenizer, model_description = recipes.load_model_and_tokenizer(model_args, x_train + y_train, seed=training_args.seed, special_tokens=tags,
                                                                   max_length=max(data_args.max_source_length, data_args.max_target_length))
    recipes.fit_lengths(model_args, data_args, tokenizer, x_train + y_train, x_train + y_train)

    # 5. The evaluation classifier: a tiny BERT on the two training corpora.
    classifier = build_default_discriminator(tokenizer, conditional=False, seed=training_args.seed, max_length=data_args.max_source_length + 8)
    classifier.model.config.id2label, classifier.model.config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
    sample = slice(0, 20000)
    recipes.train_classifier(classifier.to(model.device), x_train[sample] + y_train[sample], [0] * len(x_train[sample]) + [1] * len(y_train[sample]),
                     steps=data_args.classifier_steps, seed=training_args.seed, disable_tqdm=training_args.disable_tqdm)
    real_predictions = recipes.classify(classifier, x_valid + y_valid).argmax(-1)
    metrics = {"classifier_accuracy": 100 * (real_predictions == torch.tensor([0] * len(x_valid) + [1] * len(y_valid))).float().mean().item()}

    # 6. Cycle training: X = style 0, Y = style 1.
    trainer = recipes.build_cycle_trainer(model, training_args, tokenizer, x_train, y_train,
                                  max_x_length=data_args.max_source_length, max_y_length=data_args.max_source_length)
    metrics.update(recipes.train_and_save(trainer, training_args, time_budget=model_args.time_budget, skip_training=data_args.skip_training))

    # 7. Transfer each validation sentence into the other style (G: 0 -> 1; the shared model with
    #    the other tag, or the reconstructor R: 1 -> 0).
    decode = dict(max_source_length=data_args.max_source_length, max_new_tokens=data_args.max_target_length,
                  batch_size=training_args.per_device_eval_batch_size, **data_args.repetition_blocking())
    backward = trainer.auxiliary("reconstructor").unwrapped if trainer.reconstructor is not None else model
    models = {1: (model, recipes.direction_tokens(training_args, tokenizer, to="y")), 0: (backward, recipes.direction_tokens(training_args, tokenizer, to="x"))}
    sacrebleu = load_metric("sacrebleu")

    # 8. Accuracy under the classifier, BLEU to the source (and to references), fluency under D, and the
    #    collapse check of each direction (distinct outputs; the loss of its outputs with shuffled against true sources).
    def evaluate(splits, refs_of, where=""):
        outputs, table, collapse = {}, {}, {}
        for target, sources in splits:
            if not sources:
                continue
            generator, direction = models[target]
            outputs[target] = recipes.generate_texts(generator, tokenizer, sources, **decode, **direction,
                                                     **recipes.domain_vocabulary(trainer, to="y" if target == 1 else "x"))
            refs = refs_of(target)
            for system, texts in (("model", outputs[target]), ("copy source", sources)):
                row = {"accuracy": 100 * (recipes.classify(classifier, texts).argmax(-1) == target).float().mean().item(),
                       "BLEU-source": sacrebleu.compute(predictions=texts, references=[[s] for s in sources])["score"]}
                if refs is not None:
                    row["BLEU-ref"] = sacrebleu.compute(predictions=texts, references=[[r] for r in refs])["score"]
                judge = trainer.discriminator if target == 1 else trainer.source_discriminator  # D on style 1, D_X on style 0
                if judge is not None:
                    row["fluency p_D"] = recipes.classify(judge, texts)[:, judge.label_index("real")].exp().mean().item()
                table[f"{where}{system} {names[1 - target]} to {names[target]}"] = row
            name = f"{where}model {names[1 - target]} to {names[target]}"
            collapse[name] = recipes.check_outputs(generator, tokenizer, sources, outputs[target], data_args=data_args,
                                                   batch_size=training_args.per_device_eval_batch_size, direction=direction, seed=training_args.seed)
            recipes.add_collapse_columns(table, name, collapse[name])
        return outputs, table, collapse

    outputs, table, collapse = evaluate(((1, x_valid), (0, y_valid)), lambda target: references(corpus.validation, data_args, 1 - target))
    metrics.update(recipes.flatten_table(table))
    samples = [{names[0]: s, f"-> {names[1]}": o} for s, o in list(zip(x_valid, outputs[1]))[: data_args.num_printed_samples]]
    samples += [{names[1]: s, f"-> {names[0]}": o} for s, o in list(zip(y_valid, outputs[0]))[: data_args.num_printed_samples]]

    # 9. --do_predict: --test_file (style 0 -> 1) and --test_target_file (style 1 -> 0), the style tags applied;
    #    human transfers of --test_file from --test_reference_file. Predictions and metrics in output_dir.
    if training_args.do_predict and data_args.test_file:
        x_test = list(recipes.read_table(data_args.test_file, col)[col])[: data_args.max_predict_samples]
        y_test = list(recipes.read_table(data_args.test_target_file, col)[col])[: data_args.max_predict_samples] if data_args.test_target_file else []
        human = list(recipes.read_table(data_args.test_reference_file, col)[col])[: data_args.max_predict_samples] if data_args.test_reference_file else None
        if human is not None and len(human) != len(x_test):
            raise ValueError(f"--test_reference_file has {len(human)} lines but --test_file {len(x_test)}: they must be line-aligned.")
        test_outputs, test_table, test_collapse = evaluate(((1, x_test), (0, y_test)), lambda target: human if target == 1 else None, where="test: ")
        scores = recipes.flatten_table(test_table)
        for name, check in test_collapse.items():
            scores.update(check.metrics(f"{recipes.slug(name)}_"))
        recipes.write_predictions(training_args.output_dir, "test", test_outputs[1], scores)
        if 0 in test_outputs:
            recipes.write_predictions(training_args.output_dir, "test_target", test_outputs[0], scores)
        metrics.update(scores)
        table.update(test_table)
        collapse.update(test_collapse)

    # 10. Tables, results.json and the training curves.
    return recipes.report(metrics, corpus=corpus, model_description=model_description, output_dir=training_args.output_dir,
                          samples=samples, table=table, title=f"Style transfer {names[0]} <-> {names[1]}",
                          plot=data_args.plot_curves, collapse=collapse)


if __name__ == "__main__":
    main()
