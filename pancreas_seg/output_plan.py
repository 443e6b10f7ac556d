"""What a prediction will read and write, checked before any network runs.

:func:`plan_outputs` turns an input path (a scan or a batch folder) and an output path into the
cases to predict and each case's :class:`~pancreas_seg.predict.OutputPaths`, and refuses a plan
that cannot work: a NIfTI output name for a batch, a series choice in a batch, a DICOM SEG of a
NIfTI input, a job split of a single scan, outputs that would replace an input or belong to two
cases. The command line and Python callers get the same checks and the same messages.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pancreas_seg.cohort import select_part
from pancreas_seg.errors import UsageError
from pancreas_seg.io.nifti import NIFTI_SUFFIXES
from pancreas_seg.predict import OutputPaths, ScanInput, check_outputs, find_inputs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptionNames:
    """How the options of :func:`plan_outputs` are named in its error messages (the command line
    passes its flags)."""

    output: str = "output"
    series: str = "series"
    dicom_seg: str = "dicom_seg"
    num_parts: str = "num_parts"
    part_id: str = "part_id"


@dataclass(frozen=True)
class OutputPlan:
    """The cases to predict and where each one's outputs go.

    Attributes:
        batch: the input is a batch folder (outputs in a folder, named by case id) rather than one scan
            (outputs beside the given mask name).
        cases: ``(input, outputs)`` of every case, sorted by case id.
    """

    batch: bool
    cases: tuple[tuple[ScanInput, OutputPaths], ...]

    @property
    def items(self) -> list[ScanInput]:
        """The inputs of :attr:`cases`, in order."""
        return [item for item, _ in self.cases]


def plan_outputs(source: str | os.PathLike, output: str | os.PathLike, *, series: str | None = None,
                 dicom_seg: bool = False, num_parts: int = 1, part_id: int = 0,
                 names: OptionNames = OptionNames()) -> OutputPlan:
    """Find the scans under ``source`` and plan their outputs at ``output``, or refuse the plan.

    Args:
        source: a NIfTI file, a DICOM series folder or a batch folder (:func:`~pancreas_seg.predict.find_inputs`).
        output: the mask (``.nii.gz`` / ``.nii``) of a single scan, the output folder of a batch.
        series: SeriesInstanceUID asked for (a single DICOM folder only).
        dicom_seg: a DICOM SEG will be written (DICOM inputs only).
        num_parts, part_id: this job's share of a batch (:func:`pancreas_seg.cohort.select_part`).
        names: the options' names in the messages.

    Raises:
        InputError: an input that cannot be read, or outputs that cannot be written, would replace an
            input scan or are outputs of two cases.
        UsageError: options that do not fit the input (batch or single scan, DICOM or NIfTI).
    """
    source, output = Path(source), Path(output)
    items, batch = find_inputs(source, exclude=output)
    if num_parts != 1 or part_id != 0:
        if not batch:
            raise UsageError(f"{names.num_parts} and {names.part_id} share a batch folder between jobs; "
                             f"{source} is one scan")
        try:
            part = select_part(items, num_parts, part_id)
        except ValueError as err:
            raise UsageError(f"{names.part_id}: {err}") from None
        logger.info("part %d of %d: %d of %d scans", part_id, num_parts, len(part), len(items))
        items = part
    if batch:
        if output.name.lower().endswith(NIFTI_SUFFIXES):
            raise UsageError(f"{source} is a batch folder ({len(items)} scans); {names.output} must be an output folder")
        if series:
            raise UsageError(f"{names.series} selects a series in a single DICOM folder, not in a batch")
        cases = tuple((item, OutputPaths.in_folder(output, item.case_id)) for item in items)
    else:
        cases = ((items[0], OutputPaths.beside(output)),)
        if dicom_seg and items[0].kind != "dicom":
            raise UsageError(f"{names.dicom_seg} needs a DICOM input series; {source} is NIfTI")
    check_outputs(cases)
    return OutputPlan(batch, cases)
