"""Phantom sampling ranges and tissue values (CT in HU, T1 MRI in arbitrary units)."""
from __future__ import annotations

from dataclasses import dataclass

REFERENCE_MATRIX = 512  # px, matrix at which ``pixel_mm`` is specified
CT_MIN_HU = -1024  # HU, smallest value stored in CT images
CT_MAX_HU = 3071  # HU, largest value stored in CT images
MRI_MAX_VALUE = 4095.0  # arbitrary units, MRI values are clipped here
CHUNK_VOXELS = 6_000_000  # fine voxels rendered at once (memory vs speed)
MODALITY_CODES = {"CT": 1, "MRI": 2}  # mixed into the seed so CT and MRI differ
NOISE_TILES = 8  # pre-filtered noise tiles per case; each slice takes one, randomly rolled and flipped


@dataclass(frozen=True)
class PhantomConfig:
    """How phantoms are sampled. One config serves both modalities; the
    modality is chosen per call of :func:`generate_case`."""

    modality: str = "CT"  # "CT" | "MRI", used when generate_case gets no modality (write_phantom_set, make_phantoms)
    matrix: int = 512  # px, rows = columns of each axial slice (NIH: 512, Sec. IV-A)
    pixel_mm: tuple[float, float] = (0.6, 0.9)  # mm, in-plane pixel range at 512 px; scaled by 512/matrix so the field of view stays anatomical
    ct_slice_mm: tuple[float, float] = (1.0, 2.5)  # mm, CT slice thickness = spacing range (NIH Pancreas-CT)
    ct_length_mm: tuple[float, float] = (270.0, 420.0)  # mm, CT scan length drawn: lung bases and liver dome down to the pelvis
    ct_above_dome_mm: tuple[float, float] = (20.0, 60.0)  # mm, CT coverage above the liver dome (lung bases)
    ct_slices: tuple[int, int] = (180, 470)  # slices, CT slice count kept in this range (NIH: 181-466)
    mri_slice_mm: tuple[float, float] = (5.0, 8.0)  # mm, MRI slice thickness range (paper: 7 mm on average, Sec. IV-D)
    mri_blocks: tuple[int, int] = (2, 4)  # breath holds per MRI scan
    mri_block_slices: tuple[int, int] = (8, 15)  # slices acquired in one breath hold
    mri_block_shift_mm: tuple[float, float] = (3.0, 5.0)  # mm, viscera shift between consecutive breath holds (none within one)
    mri_margin_mm: float = 15.0  # mm, least MRI coverage above and below the pancreas
    sub_slice_mm: float = 1.25  # mm, thickest sub-slice averaged into a slice near the pancreas (through-plane partial volume)
    ct_noise_hu: tuple[float, float] = (10.0, 20.0)  # HU, standard deviation of CT noise in a uniform region
    ct_psf_mm: tuple[float, float] = (0.5, 0.8)  # mm, sigma of the in-plane Gaussian PSF of CT
    mri_psf_mm: tuple[float, float] = (0.9, 1.4)  # mm, sigma of the in-plane PSF of MRI (acquired ~256 px, shown at 512)
    mri_noise_fraction: tuple[float, float] = (0.015, 0.035)  # sigma of the Rician noise as a fraction of the fat signal
    mri_bias_strength: float = 0.25  # sd of the log-bias polynomial coefficients (multiplicative bias field)
    texture_mm: float = 1.5  # mm, in-plane correlation length of the fine tissue texture (3D field)
    texture_z_mm: float = 2.0  # mm, through-plane correlation length of the fine texture
    coarse_texture_mm: float = 4.0  # mm, in-plane correlation length of the coarse texture (lobules, heterogeneity)
    coarse_texture_z_mm: float = 5.0  # mm, through-plane correlation length of the coarse texture
    coarse_texture_share: float = 0.5  # share of the texture variance in the coarse component

    def __post_init__(self) -> None:
        if self.modality not in MODALITY_CODES:
            raise ValueError(f"modality must be one of {tuple(MODALITY_CODES)}, got {self.modality!r}")
        if self.matrix < 32:
            raise ValueError(f"matrix must be at least 32 px, got {self.matrix}")
        for name in ("pixel_mm", "ct_slice_mm", "ct_length_mm", "ct_above_dome_mm", "ct_slices", "mri_slice_mm",
                     "mri_blocks", "mri_block_slices", "mri_block_shift_mm", "ct_noise_hu", "ct_psf_mm", "mri_psf_mm",
                     "mri_noise_fraction"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be a range 0 <= low <= high, got {(lo, hi)}")
        if self.pixel_mm[0] <= 0 or self.ct_slice_mm[0] <= 0 or self.mri_slice_mm[0] <= 0:
            raise ValueError("pixel and slice sizes must be positive")
        if self.mri_blocks[0] < 1 or self.mri_block_slices[0] < 1 or self.ct_slices[0] < 1:
            raise ValueError("slice and block counts must be at least 1")
        if not 0 <= self.coarse_texture_share <= 1:
            raise ValueError(f"coarse_texture_share must be in [0, 1], got {self.coarse_texture_share}")
        if self.sub_slice_mm <= 0:
            raise ValueError(f"sub_slice_mm must be positive, got {self.sub_slice_mm}")


# --- tissue tables --------------------------------------------------------------
# name: (low, high, texture sd). CT in HU for portal-venous contrast CT; MRI in
# arbitrary units of a non-fat-suppressed T1 gradient echo (fat bright, pancreas
# brighter than liver, fluid dark, vessels flow voids). A case draws each value
# uniformly from its range; texture sd is in the same unit.
CT_TISSUES: dict[str, tuple[float, float, float]] = {
    "air": (-1000, -1000, 0), "table": (-450, -300, 30), "skin": (10, 40, 5),
    "fat": (-115, -90, 8), "visceral_fat": (-105, -70, 14), "muscle": (45, 65, 6),
    "bone_cortex": (700, 1100, 60), "bone_marrow": (180, 320, 40), "disc": (70, 100, 6),
    "rib": (350, 550, 60), "csf": (5, 20, 3), "liver": (95, 125, 6), "spleen": (100, 130, 5),
    "kidney_cortex": (150, 200, 6), "kidney_medulla": (100, 140, 6), "bile": (0, 20, 3),
    "bowel_wall": (75, 110, 8), "bowel_fluid": (5, 30, 4), "gas": (-1000, -1000, 0),
    "stool": (-160, -60, 120), "food": (20, 60, 25), "artery": (150, 210, 5),
    "ivc": (100, 140, 6), "portal": (130, 180, 5), "pancreas": (85, 115, 10),
    "duct": (5, 25, 3), "oral_contrast": (200, 400, 20), "lung": (-880, -820, 30),
    "heart": (110, 160, 10), "urine": (0, 15, 3),
}
MRI_TISSUES: dict[str, tuple[float, float, float]] = {
    "air": (5, 5, 0), "table": (5, 10, 0), "skin": (500, 650, 20),
    "fat": (1050, 1200, 30), "visceral_fat": (950, 1150, 45), "muscle": (330, 430, 15),
    "bone_cortex": (30, 60, 5), "bone_marrow": (600, 780, 40), "disc": (250, 330, 15),
    "rib": (250, 400, 30), "csf": (120, 180, 8), "liver": (520, 640, 18), "spleen": (380, 460, 15),
    "kidney_cortex": (430, 500, 15), "kidney_medulla": (300, 360, 12), "bile": (130, 200, 8),
    "bowel_wall": (480, 600, 25), "bowel_fluid": (120, 220, 10), "gas": (5, 5, 0),
    "stool": (250, 450, 120), "food": (300, 420, 40), "artery": (40, 90, 10),
    "ivc": (60, 140, 15), "portal": (60, 140, 15), "pancreas": (600, 720, 30),
    "duct": (150, 220, 8), "oral_contrast": (120, 220, 10), "lung": (15, 30, 5),
    "heart": (150, 300, 30), "urine": (80, 140, 8),
}
TISSUE_TABLES = {"CT": CT_TISSUES, "MRI": MRI_TISSUES}

# roles of a paint operation
NORMAL, ORGAN, ORGAN_PART = 0, 1, 2  # ORGAN sets the label, ORGAN_PART leaves it alone

