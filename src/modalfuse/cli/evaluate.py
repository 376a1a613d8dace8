"""`modalfuse eval` (figures per retrieval mode, fusion tuning) and `modalfuse dataset`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress

from modalfuse.cli.options import (
    EngineOpt,
    FusionConfigOpt,
    JsonFlag,
    LexicalFieldsOpt,
    common_request_fields,
    settings_for,
)
from modalfuse.evaluation.defaults import DEFAULT_MODES

dataset_app = typer.Typer(no_args_is_help=True, help="Build BEIR-layout evaluation sets.")
err = Console(stderr=True)


def eval_command(
    dataset: Annotated[Path, typer.Argument(help="BEIR-layout folder.", file_okay=False)],
    split: Annotated[str, typer.Option(help="qrels/<split>.tsv to score against.")] = "test",
    modes: Annotated[
        str,
        typer.Option(
            help="Comma-separated: a retriever (lexical, text_vector, text_to_image, image), "
            "hybrid (auto), hybrid-rrf, hybrid-minmax, hybrid-zscore, or a+b retriever lists; "
            "any may end with +collapse or +mmr:LAMBDA."
        ),
    ] = ",".join(DEFAULT_MODES),
    engine: EngineOpt = None,
    k: Annotated[int, typer.Option(help="Cut-off for nDCG, Recall and MRR.")] = 10,
    window: Annotated[int, typer.Option(help="Candidates per retriever (at least 100).")] = 100,
    fusion_config: FusionConfigOpt = None,
    tune: Annotated[
        bool, typer.Option("--tune", help="Sweep fusion settings on dev, score them on test.")
    ] = False,
    dev_split: Annotated[
        str | None,
        typer.Option(help="Tune on this qrels split (default: half of --split's queries)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the dev/test halving.")] = 0,
    tune_out: Annotated[
        Path | None,
        typer.Option(help="Where --tune writes the config (default: OUT/fusion.json or ./)."),
    ] = None,
    keep_identical_ids: Annotated[
        bool, typer.Option(help="Score hits whose id equals the query id (BEIR drops them).")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Write results.json, per_query.jsonl and chart.png here.")
    ] = None,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            help="Score even when documents are missing from the index (the table says so).",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes that build the index (default: one per core)."),
    ] = None,
    language: Annotated[
        str | None,
        typer.Option(
            help="en or zh: the analyzer (and, for zh, the text encoder bge-small-zh-v1.5 unless "
            "MODALFUSE_TEXT_ENCODER says otherwise); default: dataset.json's language, else en."
        ),
    ] = None,
    lexical_fields: LexicalFieldsOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """nDCG@k, Recall@k, Recall@100 and MRR@k for each retrieval mode on a BEIR-layout dataset.

    The corpus is indexed through the normal ingest path (and reused while the dataset and the
    encoders are unchanged); every query runs through the normal query layer."""
    from modalfuse.evaluation import beir, evaluation, report
    from modalfuse.evaluation.eval_index import ensure_index, for_language
    from modalfuse.query.fusion_config import load_fusion_config
    from modalfuse.query.searcher import Searcher

    started = time.perf_counter()
    common = common_request_fields(lexical_fields)
    data = beir.load(dataset, split)
    settings, chosen_language = for_language(data.root, settings_for(engine), language)
    chosen = [evaluation.parse_mode(m) for m in modes.split(",") if m.strip()]
    if fusion_config is not None:
        chosen.append(evaluation.configured_mode("configured", load_fusion_config(fusion_config)))
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("indexing the corpus through the queue", total=None)
        built = ensure_index(
            data.root,
            settings,
            on_start=lambda n: progress.update(task, total=n),
            on_batch=lambda n: progress.advance(task, n),
            worker_processes=workers,
            language=chosen_language,
        )
        progress.remove_task(task)
        missing = built["documents"] - built["in_index"]
        if missing > 0 or built["dead_lettered"]:
            from modalfuse.ingest.deadletters import describe

            err.print(
                describe(built["dead_lettered"], built.get("dead_letter_reasons", []),
                         total=built["documents"]),
                style="bold red", markup=False,
            )  # fmt: skip
        if missing > 0 and not allow_partial:
            err.print(
                f"error: {missing} of {built['documents']} documents are not in the index, so "
                "the figures would be wrong; fix the cause and run again (the missing "
                "documents are published again), or pass --allow-partial",
                markup=False,
            )
            if as_json:
                print(json.dumps({"error": "partial index", "index": built}, indent=2))
            raise typer.Exit(1)
        searcher = Searcher(settings)
        index = built["index"]
        result: dict[str, Any] = {
            "dataset": str(data.root),
            "split": split,
            "engine": settings.engine,
            "language": chosen_language,
            "text_encoder": settings.text_encoder,
            **common,
            "index": built,
            "k": k,
            "queries": len(data.queries),
        }
        scored = data
        if tune:
            scored, result["tuning"] = _tune(
                searcher, data, index, progress, k=k, seed=seed, dev_split=dev_split,
                keep_identical_ids=keep_identical_ids, tune_out=tune_out or _default_tune_out(out),
                common=common,
            )  # fmt: skip
            config = load_fusion_config(Path(result["tuning"]["config_file"]))
            chosen.append(evaluation.configured_mode("tuned", config))
        task = progress.add_task("querying", total=len(scored.queries) * len(chosen))
        result["modes"], per_query = evaluation.evaluate(
            searcher,
            scored,
            chosen,
            index=index,
            k=k,
            window=window,
            ignore_identical_ids=not keep_identical_ids,
            on_query=lambda: progress.advance(task),
            common=common,
        )
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    title = f"{data.name} ({split}{', test half' if tune and not dev_split else ''})"
    if built["in_index"] < built["documents"]:
        result["partial"] = {"in_index": built["in_index"], "documents": built["documents"]}
        title += f" [partial: {built['in_index']} of {built['documents']} documents]"
    if out is not None:
        result["files"] = report.write_outputs(out, result, per_query, k=k, title=title)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    console = Console()
    console.print(report.table(result["modes"], k=k, title=title))
    for mode, figures in result["modes"].items():
        # A mode that could not run on some queries says why, never a silent zero.
        for reason, count in figures.get("not_applicable", {}).items():
            console.print(f"{mode}: {count} queries not run: {reason}", markup=False)
    if tune:
        t = result["tuning"]
        console.print(
            f"tuned on {t['dev_queries']} dev queries ({t['candidates']} settings): "
            f"{t['config']} -> {t['config_file']}"
        )
    if out is not None:
        files = result["files"]
        written = ", ".join(v for k, v in files.items() if k != "chart_skipped")
        console.print(f"wrote {written}", markup=False)
        if "chart_skipped" in files:
            console.print(f"chart skipped: {files['chart_skipped']}", markup=False)


def _default_tune_out(out: Path | None) -> Path:
    return (out / "fusion.json") if out is not None else Path("fusion.json")


def _tune(
    searcher: Any,
    data: Any,
    index: str,
    progress: Progress,
    *,
    k: int,
    seed: int,
    dev_split: str | None,
    keep_identical_ids: bool,
    tune_out: Path,
    common: dict[str, Any],
) -> tuple[Any, dict[str, Any]]:
    """Tune on dev; return the dataset restricted to the test queries and the tuning summary."""
    import dataclasses

    from modalfuse.evaluation import beir, tuning

    if dev_split is not None:
        dev_data = beir.load(data.root, dev_split)
        test_ids = [q for q in data.queries if q not in dev_data.queries]
        dev_ids = list(dev_data.queries)
    else:
        dev_data = data
        dev_ids, test_ids = tuning.split_queries(list(data.queries), seed)
    task = progress.add_task("tuning: retrieving dev queries", total=len(dev_ids))
    sweep = progress.add_task("tuning: sweeping settings", total=None)
    best, summary = tuning.tune(
        searcher,
        dev_data,
        dev_ids,
        index=index,
        k=k,
        ignore_identical_ids=not keep_identical_ids,
        on_query=lambda: progress.advance(task),
        on_candidate=lambda: progress.advance(sweep),
        progress_total=lambda n: progress.update(sweep, total=n),
        common=common,
    )
    test = dataclasses.replace(
        data,
        queries={q: data.queries[q] for q in test_ids},
        qrels={q: data.qrels[q] for q in test_ids},
    )
    provenance = {
        "dataset": str(data.root),
        "split": data.split,
        "dev": dev_split or f"half of {data.split} (seed {seed})",
        "metric": f"ndcg@{k}",
        **{key: summary[key] for key in summary if key.startswith("dev_")},
    }
    config = best.model_copy(update={"tuned": provenance})
    tune_out.parent.mkdir(parents=True, exist_ok=True)
    tune_out.write_text(config.model_dump_json(indent=2, exclude_none=True) + "\n")
    return test, summary | {
        "test_queries": len(test_ids),
        "config": best.settings(),
        "config_file": str(tune_out),
    }


@dataset_app.command("fashion")
def fashion(
    catalog: Annotated[
        Path, typer.Option(help="Fashion-layout products.jsonl (id, articleType, ...).")
    ],
    out: Annotated[Path, typer.Option(help="Folder to write the BEIR-layout dataset into.")],
    image_only: Annotated[
        bool, typer.Option("--image-only", help="Documents carry only their image.")
    ] = False,
    all_products: Annotated[
        bool, typer.Option("--all", help="Every product, not only the held-out 10%.")
    ] = False,
    min_relevant: Annotated[int, typer.Option(help="Least documents per colour+type query.")] = 2,
    as_json: JsonFlag = False,
) -> None:
    """A BEIR-layout set from a product catalogue: colour+type, exact-name and image queries."""
    from modalfuse.evaluation.datasets import fashion_beir

    summary = fashion_beir(
        catalog,
        out,
        image_only=image_only,
        held_out_only=not all_products,
        min_relevant=min_relevant,
    )
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    Console().print(f"wrote {out}: {summary['documents']} documents, queries {summary['queries']}")
