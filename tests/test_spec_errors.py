"""Bad input: one clear message naming file, line or field; exit 2; no traceback;
nothing written to the catalog."""

import json
import textwrap

import pytest

from conftest import REPO, write

GOOD_MEMBERS = "members: [ResNext50_32.2, MNASNet_1]\n"

CASES = {
    "yaml_syntax": ("name: x\nmembers: [ResNext50_32.2\n", ["YAML syntax error", ":3:"]),
    "unknown_top_key": ("name: x\nfoo: 1\n" + GOOD_MEMBERS, ["spec.yaml:2", "unknown key 'foo'"]),
    "unknown_nested_key": ("name: x\ntraining:\n  epoch: 3\n" + GOOD_MEMBERS,
                           ["spec.yaml:3", "training.epoch", "unknown key"]),
    "wrong_type": ("name: x\ntraining:\n  epochs: many\n" + GOOD_MEMBERS,
                   ["spec.yaml:3", "training.epochs", "integer"]),
    "unknown_model": ("name: x\nmembers:\n  - ResNext50_32.2\n  - ResNext50_32.3\n",
                      ["spec.yaml:4", "members.1.model", "did you mean 'ResNext50_32.2'"]),
    "zero_epochs": ("name: x\ntraining:\n  epochs: 0\n" + GOOD_MEMBERS,
                    ["spec.yaml:3", "training.epochs", "greater than 0"]),
    "negative_epochs": ("name: x\n" + "members:\n  - model: MNASNET_1\n    epochs: -3\n",
                        ["spec.yaml:4", "members.0.epochs", "greater than 0"]),
    "folder_without_path": ("name: x\ndataset:\n  kind: folder\n" + GOOD_MEMBERS,
                            ["spec.yaml:2", "dataset", "needs a 'path'"]),
    "missing_dataset_path": ("name: x\ndataset:\n  kind: folder\n  path: /nonexistent/imagenet\n"
                             + GOOD_MEMBERS, ["spec.yaml:4", "dataset.path", "does not exist"]),
    "unknown_corruption": ("name: x\nvalidation:\n  sets: [clean, gausian_noise]\n" + GOOD_MEMBERS,
                           ["spec.yaml:3", "validation.sets", "gausian_noise",
                            "did you mean 'gaussian_noise'"]),
    "severity_too_high": ("name: x\nvalidation:\n  severities: [1, 6]\n" + GOOD_MEMBERS,
                          ["spec.yaml:3", "validation.severities.1", "less than or equal to 5"]),
    "severity_zero": ("name: x\nvalidation:\n  severities: [0]\n" + GOOD_MEMBERS,
                      ["validation.severities.0", "greater than or equal to 1"]),
    "empty_members": ("name: x\nmembers: []\n", ["spec.yaml:2", "members", "at least 1"]),
    "missing_members": ("name: x\n", ["members", "required field is missing"]),
    "missing_name": (GOOD_MEMBERS, ["name", "required field is missing"]),
    "empty_file": ("", ["empty file"]),
    "list_at_top": ("- ResNext50_32.2\n", ["a spec is a mapping"]),
    "duplicate_member": ("name: x\nmembers: [MNASNET_1, MNASNET_1]\n",
                         ["members", "appears twice"]),
    "crop_scale_reversed": ("name: x\ntraining:\n  crop_scale: [0.9, 0.2]\n" + GOOD_MEMBERS,
                            ["spec.yaml:3", "training.crop_scale", "low <= high"]),
    "hflip_out_of_range": ("name: x\ntraining:\n  hflip: 1.5\n" + GOOD_MEMBERS,
                           ["training.hflip", "less than or equal to 1"]),
    "unknown_scale": ("name: x\nscale: huge\n" + GOOD_MEMBERS, ["spec.yaml:2", "scale", "'tiny' or 'paper'"]),
    "missing_weights_file": ("name: x\nmembers:\n  - model: MNASNET_1\n    weights: nope.pt\n",
                             ["spec.yaml:4", "members.0.weights", "does not exist"]),
    "supernet_listing_missing": ("name: x\ntraining:\n  supernet:\n    listing: nope.json\n"
                                 + GOOD_MEMBERS, ["spec.yaml:4", "training.supernet.listing",
                                                  "does not exist"]),
    "supernet_listing_bad_entry": (
        "name: x\ntraining:\n  supernet: {listing: listing.json}\nmembers: [B_0]\n",
        ["listing.json", "list_stage_descriptions[0].epochs", "positive integer"]),
    "nncf_backend_with_subnet_member": ("name: x\ntraining:\n  supernet:\n    backend: nncf\n"
                                        "members: [SqueezeNet, B_0]\n", ["spec.yaml:5",
                                        "members.1.model", "cut from ensui's super-network"]),
    "supernet_unknown_backend": ("name: x\ntraining:\n  supernet: {backend: ofa}\n" + GOOD_MEMBERS,
                                 ["spec.yaml:3", "training.supernet.backend", "'ensui'"]),
    "train_false_without_weights": ("name: x\nmembers:\n  - model: MNASNET_1\n    train: false\n",
                                    ["members.0.weights", "needs a weights file"]),
    "released_source_without_path": ("name: x\nvalidation:\n  source: imagenet_c\n" + GOOD_MEMBERS,
                                     ["validation", "needs a 'path'"]),
    "zero_batch": ("name: x\ntraining:\n  batch_size: 0\n" + GOOD_MEMBERS,
                   ["training.batch_size", "greater than 0"]),
    "negative_lr": ("name: x\nmembers:\n  - model: MNASNET_1\n    lr: -0.1\n",
                    ["spec.yaml:4", "members.0.lr", "greater than 0"]),
    "unknown_member_key": ("name: x\nmembers:\n  - model: MNASNET_1\n    optimiser: sgd\n",
                           ["spec.yaml:4", "members.0.optimiser", "unknown key"]),
    "duplicate_sets": ("name: x\nvalidation:\n  sets: [clean, clean]\n" + GOOD_MEMBERS,
                       ["validation.sets", "listed twice"]),
    "team_larger_than_members": ("name: x\nanalysis:\n  team_sizes: [2, 5]\n" + GOOD_MEMBERS,
                                 ["analysis.team_sizes", "5 is more than the 2 members"]),
    "unknown_metric": ("name: x\nanalysis:\n  metrics: [label_disagrement]\n" + GOOD_MEMBERS,
                       ["spec.yaml:3", "analysis.metrics", "did you mean 'label_disagreement'"]),
    "unknown_team_member": ("name: x\nanalysis:\n  teams: [[ResNext50_32.2, MNASNet_2]]\n"
                            + GOOD_MEMBERS, ["analysis.teams", "'MNASNet_2' is not a member"]),
    "unknown_consensus": ("name: x\nanalysis:\n  consensus: [median]\n" + GOOD_MEMBERS,
                          ["spec.yaml:3", "analysis.consensus.0", "'average'"]),
    "unknown_attribution_method": ("name: x\nanalysis:\n  attribution:\n    methods: [occlusion]\n"
                                   + GOOD_MEMBERS, ["spec.yaml:4", "analysis.attribution.methods.0",
                                                    "'integrated_gradients'"]),
    "attribution_method_twice": ("name: x\nanalysis:\n  attribution:\n    methods: [saliency, "
                                 "saliency]\n" + GOOD_MEMBERS,
                                 ["analysis.attribution.methods", "named twice"]),
    "metric_of_disabled_attribution": (
        "name: x\nanalysis:\n  attribution: {enabled: false}\n  metrics: [attribution_diversity]\n"
        + GOOD_MEMBERS, ["spec.yaml:4", "analysis.metrics", "needs attribution.enabled: true"]),
    "metric_of_unlisted_method": (
        "name: x\nanalysis:\n  metrics: ['attribution_diversity:saliency']\n" + GOOD_MEMBERS,
        ["analysis.metrics", "unknown metric 'attribution_diversity:saliency'"]),
    "cka_batch_too_small": ("name: x\nanalysis:\n  activation:\n    batch_size: 3\n" + GOOD_MEMBERS,
                            ["spec.yaml:4", "analysis.activation.batch_size",
                             "greater than or equal to 4"]),
    "unknown_similarity": ("name: x\nanalysis:\n  attribution: {similarity: pearson}\n"
                           + GOOD_MEMBERS, ["analysis.attribution.similarity", "'cosine'"]),
    "topk_fraction_zero": ("name: x\nanalysis:\n  attribution: {topk_fraction: 0}\n"
                           + GOOD_MEMBERS, ["analysis.attribution.topk_fraction", "greater than 0"]),
    "unknown_reference_member": ("name: x\nanalysis:\n  reference_member: ResNet50\n"
                                 + GOOD_MEMBERS, ["analysis.reference_member", "not a member"]),
    "tab_indentation": ("name: x\nmembers:\n\t- MNASNET_1\n", ["YAML syntax error", ":3:"]),
    "joint_unknown_model": ("name: x\n" + GOOD_MEMBERS + "joint:\n  - name: t\n    models: [MNASNET_1, "
                            "SqeezeNet]\n", ["spec.yaml:5", "joint.0.models.1.model",
                                              "did you mean 'SqueezeNet'"]),
    "joint_dino_model": ("name: x\n" + GOOD_MEMBERS + "joint:\n  - name: t\n    models: [MNASNET_1, "
                         "dino_resnet1]\n", ["joint.0.models.1.model", "supervised models only"]),
    "joint_balanced_lambda_above_1": (
        "name: x\n" + GOOD_MEMBERS + "joint:\n  - name: t\n    models: [MNASNET_1, SqueezeNet]\n"
        "    lambdas: [0, 2]\n", ["spec.yaml:4", "joint.0", "0 <= λ <= 1"]),
    "joint_negative_lambda": (
        "name: x\n" + GOOD_MEMBERS + "joint:\n  - name: t\n    loss: ncl\n    models: [MNASNET_1, SqueezeNet]\n"
        "    lambdas: [-1]\n", ["spec.yaml:7", "joint.0.lambdas.0", "greater than or equal to 0"]),
    "joint_one_model": ("name: x\n" + GOOD_MEMBERS + "joint:\n  - name: t\n    models: [MNASNET_1]\n",
                        ["spec.yaml:5", "joint.0.models", "at least 2"]),
    "joint_unknown_loss": ("name: x\n" + GOOD_MEMBERS + "joint:\n  - name: t\n    loss: nlc\n"
                           "    models: [MNASNET_1, SqueezeNet]\n",
                           ["spec.yaml:5", "joint.0.loss", "'balanced'"]),
    "joint_name_twice": ("name: x\n" + GOOD_MEMBERS + "joint:\n  - {name: t, models: [MNASNET_1, SqueezeNet]}\n"
                         "  - {name: t, models: [MNASNET_1, SqueezeNet]}\n",
                         ["joint: the name 't' is used twice"]),
    "joint_model_twice": ("name: x\n" + GOOD_MEMBERS + "joint:\n  - {name: t, models: [MNASNET_1, MNASNET_1]}\n",
                          ["joint.0", "'MNASNET_1' appears twice"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["headless", "check"])
def test_bad_spec_is_one_clear_message(case, command, cli, tmp_path, home):
    text, fragments = CASES[case]
    listing = json.loads((REPO / "data" / "paper" / "listing_1.json").read_text())
    listing["bootstrapNAS"]["training"]["schedule"]["list_stage_descriptions"][0]["epochs"] = 0
    write(tmp_path, json.dumps(listing), "listing.json")
    spec = write(tmp_path, textwrap.dedent(text))
    args = ["headless", "--spec", spec] if command == "headless" else ["spec", "check", spec]
    code, out, err = cli(*args)
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    message = " ".join(err.split())  # rich may wrap long lines
    assert str(spec.name) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert not home.exists(), "an invalid spec must not create or write the catalog"


def test_missing_spec_file(cli, tmp_path, home):
    code, _, err = cli("headless", "--spec", tmp_path / "absent.yaml")
    assert code == 2 and "spec file not found" in err and not home.exists()


def test_bad_spec_leaves_existing_catalog_untouched(cli, tmp_path, home):
    from ensui.catalog import Catalog

    Catalog(home / "catalog.db").close()
    spec = write(tmp_path, "name: x\nmembers: [ResNext50_32.9]\n")
    code, _, err = cli("headless", "--spec", spec)
    assert code == 2 and "did you mean" in err
    cat = Catalog(home / "catalog.db")
    assert cat.counts()["experiments"] == 0 and cat.counts()["jobs"] == 0
