"""disentkit.metrics: the disentanglement metric suite.

Protocol-level metrics take ``(ground_truth_data, representation_function, random_state,
**params)`` with disentanglement_lib's parameter names, the Locatello et al. (2019) study values
as defaults and dlib's result keys; each has an array-level scorer (points-first arrays).
:func:`evaluate` runs several of them, sharing codes where the random stream allows and encoding
a deterministic grid once when that is cheaper (:mod:`disentkit.metrics.grid`).
:func:`evaluate_attributes` scores attribute-labelled image sets (CelebA, LFW): TAD and probes.
"""

from disentkit.metrics.attribute_suite import (
    ATTRIBUTE_METRICS,
    ATTRIBUTE_PRESETS,
    attribute_split,
    evaluate_attributes,
)
from disentkit.metrics.attributes import (
    attribute_probe_ap,
    attribute_regression,
    auroc_matrix,
    tad,
    tad_protocol,
)
from disentkit.metrics.beta_vae import beta_vae, beta_vae_features, beta_vae_from_features
from disentkit.metrics.dci import dci, dci_from_codes, dci_from_importance
from disentkit.metrics.declare import MetricDeclaration, declaration, declarations, declare_metric
from disentkit.metrics.factor_vae import factor_vae, factor_vae_from_codes, factor_vae_votes
from disentkit.metrics.grid import GridCodes, IndexedGrid, check_deterministic_observations
from disentkit.metrics.groups import GroupReducer, kmeans_discretize_groups, reduce_groups
from disentkit.metrics.irs import irs, irs_from_codes
from disentkit.metrics.mfvm import mfvm, mfvm_accuracy, mfvm_dlib, mfvm_votes
from disentkit.metrics.mig import mig, mig_from_codes, mig_from_discrete
from disentkit.metrics.modularity_explicitness import (
    modularity_explicitness,
    modularity_explicitness_from_codes,
)
from disentkit.metrics.sampling import (
    BatchEncoder,
    CodeCache,
    encode_observations,
    representation_from_model,
    sample_codes,
)
from disentkit.metrics.sap import sap, sap_from_codes
from disentkit.metrics.suite import (
    DEFAULT_METRICS,
    FDAE_METRICS,
    PRESETS,
    evaluate,
    library_versions,
    planned_observations,
)
from disentkit.metrics.unsupervised import unsupervised, unsupervised_from_codes
from disentkit.metrics.utils import (
    discrete_entropy,
    discrete_mutual_info,
    histogram_discretize,
    to_jsonable,
)

__all__ = [
    "ATTRIBUTE_METRICS", "ATTRIBUTE_PRESETS", "attribute_split", "evaluate_attributes",
    "factor_vae_from_codes", "DEFAULT_METRICS", "FDAE_METRICS", "MetricDeclaration", "PRESETS",
    "declaration", "declarations", "declare_metric", "BatchEncoder", "CodeCache", "GridCodes",
    "GroupReducer",
    "IndexedGrid", "check_deterministic_observations", "planned_observations",
    "attribute_probe_ap", "attribute_regression", "auroc_matrix", "beta_vae",
    "beta_vae_features", "beta_vae_from_features", "dci", "dci_from_codes", "dci_from_importance",
    "discrete_entropy", "discrete_mutual_info", "encode_observations", "evaluate", "factor_vae",
    "factor_vae_votes", "histogram_discretize", "irs", "irs_from_codes", "kmeans_discretize_groups",
    "library_versions", "mfvm", "mfvm_accuracy", "mfvm_dlib", "mfvm_votes", "mig",
    "mig_from_codes", "mig_from_discrete", "modularity_explicitness",
    "modularity_explicitness_from_codes", "reduce_groups", "representation_from_model",
    "sample_codes", "sap", "sap_from_codes", "tad", "tad_protocol", "to_jsonable",
    "unsupervised", "unsupervised_from_codes",
]
