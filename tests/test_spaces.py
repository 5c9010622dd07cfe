import optuna
import pytest
from optuna.trial import FixedTrial

from resnas.models import build
from resnas.spaces import SpaceError, load_space, shipped


def test_ships_the_three_spaces():
    assert {"wrn", "resnet", "free"} <= set(shipped())


def test_families_space_asks_each_family_only_its_own_choices():
    space = load_space("families")
    dense = space.sample(FixedTrial({"cell": "dense", "blocks": 2, "k": 2, "compression": 1.0}), in_channels=1,
                         num_classes=10)
    assert dense.family == "dense" and dense.blocks == (2, 2, 2) and dense.inner_channels(0) == 24
    assert dense.compression == 1.0 and dense.osa_convs == 5  # osa's choices were not asked
    osa = space.sample(FixedTrial({"cell": "osa", "blocks": 1, "k": 1, "osa_convs": 3, "identity": True}),
                       in_channels=1, num_classes=10)
    assert osa.family == "osa" and osa.osa_convs == 3 and osa.identity and osa.compression == 0.5
    residual = space.sample(FixedTrial({"cell": "residual", "blocks": 1, "k": 4}), in_channels=1, num_classes=10)
    assert residual.family == "residual" and residual.k == 4
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(12):
        trial = study.ask()
        spec = space.sample(trial, in_channels=1, num_classes=10)
        own = {"dense": {"compression"}, "osa": {"osa_convs", "identity"}, "residual": set()}
        assert set(trial.params) - {"cell", "blocks", "k"} == own[spec.family]
        study.tell(trial, 0.0)


def test_space_wide_keys_apply_where_they_can_and_flatten_takes_the_image_size(tmp_path):
    path = tmp_path / "mixed.toml"
    path.write_text('[fixed]\nwidths = [8, 8]\nblocks = [1, 1]\ncompression = 1.0\n'
                    '[choices]\nfamily = ["residual", "dense"]\nhead = ["gap", "flatten"]\n')
    space = load_space(str(path))
    res = space.sample(FixedTrial({"family": "residual", "head": "flatten"}), in_channels=1, num_classes=10,
                       image_size=8)
    assert res.compression == 0.5 and res.input_size == 8  # compression left out: residual has none
    dense = space.sample(FixedTrial({"family": "dense", "head": "gap"}), in_channels=1, num_classes=10, image_size=8)
    assert dense.compression == 1.0 and dense.input_size is None


@pytest.mark.parametrize("name", shipped())
def test_every_shipped_space_samples_buildable_specs_and_replays(name):
    space = load_space(name)
    assert space.size() > 1
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        trial = study.ask()
        spec = space.sample(trial, in_channels=1, num_classes=10)
        assert spec.in_channels == 1 and spec.num_classes == 10
        build(spec)
        # any trial's architecture replays from its params alone, without the study
        assert space.sample(FixedTrial(trial.params), in_channels=1, num_classes=10) == spec
        study.tell(trial, 0.0)


def test_wrn_sampling_maps_choices_to_spec():
    spec = load_space("wrn").sample(FixedTrial({"blocks": 3, "k": 4, "kernels": "1,3,1", "dropout": 0.3}),
                                    in_channels=3, num_classes=10)
    assert spec.blocks == (3, 3, 3) and spec.k == 4 and spec.kernels == (1, 3, 1) and spec.dropout == 0.3
    assert spec.preact and spec.shortcut == "B" and spec.widths == (16, 32, 64)


def test_free_space_per_stage_and_bottleneck_skips_kernels():
    params = {"blocks_0": 1, "blocks_1": 3, "blocks_2": 2, "widths_0": 32, "widths_1": 32, "widths_2": 128,
              "block": "bottleneck", "preact": False, "dropout": 0.0}
    spec = load_space("free").sample(FixedTrial(params), in_channels=1, num_classes=10)
    assert spec.blocks == (1, 3, 2) and spec.widths == (32, 32, 128) and spec.kernels == (1, 3, 1)


GOOD = '[fixed]\nwidths = [8, 16]\n[choices]\nblocks = [1, 2]\nk = [1, 2]\n'


@pytest.mark.parametrize("text, words", [
    ("[choices\nk = [1]", "not valid TOML"),
    (GOOD + "[extra]\nx = 1\n", "unknown key 'extra'"),
    (GOOD.replace("k = [1, 2]", "depth = [1, 2]"), "unknown key choices.depth; allowed: blocks"),
    (GOOD.replace("k = [1, 2]", "k = []"), "choices.k must be a non-empty list"),
    (GOOD.replace("k = [1, 2]", "k = ['wide']"), "choices.k = 'wide' has the wrong type; expected an integer"),
    (GOOD.replace("k = [1, 2]", "k = 2"), "choices.k must be a non-empty list"),
    (GOOD.replace("k = [1, 2]", "k = [1, 1]"), "lists a candidate twice"),
    (GOOD.replace("widths = [8, 16]", "widths = [8, 16]\nk = 2"), "k is both fixed and chosen"),
    (GOOD.replace("widths = [8, 16]", "widths = [16, 8]\nshortcut = 'A'"), "invalid architecture"),
    ("[fixed]\nwidths = [8]\n", "[choices] is empty"),
    (GOOD.replace("widths = [8, 16]", "num_classes = 3"), "unknown key fixed.num_classes"),
    (GOOD.replace("widths = [8, 16]", "widths = [8, 16]\ncompression = 0.5"),
     "fixed.compression applies to no architecture of this space (family residual, head gap)"),
    (GOOD + "input_size = [8]\n", "choices.input_size applies to no architecture of this space"),
    (GOOD + "compression = ['half']\n", "choices.compression = 'half' has the wrong type; expected a number in (0, 1]"),
    (GOOD + "[[cells]]\nname = 'd'\nfamily = 'dense'\nkernels = [3]\n",
     "cell 'd' makes an invalid architecture (space mine: kernels = [3] does not apply to family dense"),
])
def test_bad_space_files_name_file_key_and_rule(tmp_path, text, words):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(SpaceError) as err:
        load_space(str(path))
    assert words in str(err.value) and str(path) in str(err.value)


def test_user_space_file_and_unknown_name(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(GOOD)
    space = load_space(str(path))
    assert space.name == "mine" and space.size() == 4 and space.n_stages == 2
    with pytest.raises(SpaceError, match="unknown space 'wnr'; shipped: families, free, resnet, wrn"):
        load_space("wnr")
    with pytest.raises(SpaceError, match="no such file"):
        load_space(str(tmp_path / "missing.toml"))
