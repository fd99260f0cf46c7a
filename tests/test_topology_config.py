"""The distribution keys of the topology: LLMKG_ZONE and LLMKG_POD_INDEX, the partitions a
server hosts (given, or derived from the zones layout), and the errors that name the key
and the variable that set it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmkg.config import ConfigError, load_settings
from llmkg.topology import hosted_partitions

PRODUCTION = Path(__file__).resolve().parents[1] / "config" / "production.toml"
D = "LLMKG__SCALABILITY__DISTRIBUTION__"
LAYOUT = {f"{D}ZONES": '["us-west-2a", "us-west-2b"]', f"{D}PODS_PER_ZONE": "4"}


def hosted(environ: dict[str, str]) -> tuple[int, ...]:
    return hosted_partitions(load_settings(PRODUCTION, environ=environ).scalability.distribution)


def test_zone_and_pod_index_come_from_their_variables() -> None:
    dist = load_settings(PRODUCTION, environ={"LLMKG_ZONE": "us-west-2b", "LLMKG_POD_INDEX": "3"})
    assert dist.scalability.distribution.zone == "us-west-2b"
    assert dist.scalability.distribution.pod_index == 3
    # A zone that reads as a TOML number is still a zone name.
    assert load_settings(environ={"LLMKG_ZONE": "1"}).scalability.distribution.zone == "1"
    # The LLMKG__ form of a key wins over its short variable.
    both = {"LLMKG_ZONE": "a", f"{D}ZONE": "b"}
    assert load_settings(environ=both).scalability.distribution.zone == "b"


def test_hosted_partitions_are_given_or_derived() -> None:
    assert hosted({}) == (0,)  # no layout: the partition id
    assert hosted({"LLMKG_PARTITION_ID": "5"}) == (5,)
    assert hosted({f"{D}PARTITIONS": "[6, 2]"}) == (2, 6)
    pods = [
        hosted({**LAYOUT, "LLMKG_ZONE": zone, "LLMKG_POD_INDEX": str(i)})
        for zone in ("us-west-2a", "us-west-2b")
        for i in range(4)
    ]
    assert pods == [(0, 4), (1, 5), (2, 6), (3, 7)] * 2
    # Given partitions win over the layout.
    given = {**LAYOUT, "LLMKG_ZONE": "us-west-2a", f"{D}PARTITIONS": "[1]"}
    assert hosted(given) == (1,)


@pytest.mark.parametrize(
    ("environ", "key", "variable", "words"),
    [
        ({**LAYOUT, "LLMKG_ZONE": "us-east-1a"}, "distribution.zone", "LLMKG_ZONE", "one of zones"),
        (LAYOUT, "distribution.zone", "", "set LLMKG_ZONE"),
        (
            {**LAYOUT, "LLMKG_ZONE": "us-west-2a", "LLMKG_POD_INDEX": "4"},
            "distribution.pod_index",
            "LLMKG_POD_INDEX",
            "below pods_per_zone (4)",
        ),
        ({"LLMKG_POD_INDEX": "first"}, "distribution.pod_index", "LLMKG_POD_INDEX", "int"),
        ({"LLMKG_POD_INDEX": "-1"}, "distribution.pod_index", "LLMKG_POD_INDEX", ">= 0"),
        ({f"{D}PARTITIONS": "[1, 8]"}, "distribution.partitions", "PARTITIONS", "below"),
        ({f"{D}PARTITIONS": "[1, 1]"}, "distribution.partitions", "PARTITIONS", "twice"),
        ({f"{D}ZONES": '["a", "a"]', "LLMKG_ZONE": "a"}, "distribution.zones", "ZONES", "distinct"),
        (
            {f"{D}ZONES": '["a"]', "LLMKG_ZONE": "a"},
            "distribution.replication_factor",
            "",
            "zones x pods_per_zone is 1",
        ),
        ({f"{D}REPLICATION_FACTOR": "0"}, "distribution.replication_factor", "REPLICATION", ">= 1"),
        (
            {f"{D}DISCOVERY__PEERS": '["10.0.0.1:8081", "10.0.0.2"]'},
            "discovery.peers.1",
            "PEERS",
            "host:port",
        ),
        (
            {f"{D}DISCOVERY__PEERS": '["10.0.0.1:99999"]'},
            "discovery.peers.0",
            "PEERS",
            "1-65535",
        ),
        (
            {f"{D}DISCOVERY__REFRESH_INTERVAL": "0s"},
            "discovery.refresh_interval",
            "REFRESH",
            "more than 0",
        ),
        ({"LLMKG_PARTITION_ID": "8"}, "partition_id", "LLMKG_PARTITION_ID", "partition_count"),
    ],
)
def test_bad_values_name_the_key_and_the_variable(
    environ: dict[str, str], key: str, variable: str, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(PRODUCTION, environ=environ)
    message = str(err.value)
    assert f"scalability.distribution.{key.removeprefix('distribution.')}" in message, message
    assert words in message, message
    if variable:
        assert f"environment variable {'' if variable.startswith('LLMKG_') else D}" in message
        assert variable in message.split(":")[0], message


def test_a_bad_layout_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "llmkg.toml"
    path.write_text(
        '[scalability.distribution]\nzones = ["a", "b"]\nzone = "c"\npods_per_zone = 2\n'
    )
    with pytest.raises(ConfigError, match=f"{path}: scalability.distribution.zone = 'c'"):
        load_settings(path, environ={})


def test_the_topology_command_shows_this_servers_share(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmkg.server.cli import main

    for name, value in {
        **LAYOUT,
        "LLMKG_ZONE": "us-west-2b",
        "LLMKG_POD_INDEX": "2",
        f"{D}DISCOVERY__TYPE": "static",
        f"{D}DISCOVERY__PEERS": '["127.0.0.1:18082", "127.0.0.1:18081"]',
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LLMKG_CONFIG_PATH", str(PRODUCTION))
    monkeypatch.delenv("LLMKG_ENVIRONMENT", raising=False)
    assert main(["topology", "--resolve"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["zone"] == "us-west-2b" and shown["pod_index"] == 2
    assert shown["partitions"] == [2, 6]
    assert shown["layout"] == {
        "us-west-2a": [[0, 4], [1, 5], [2, 6], [3, 7]],
        "us-west-2b": [[0, 4], [1, 5], [2, 6], [3, 7]],
    }
    assert shown["peers"] == ["127.0.0.1:18081", "127.0.0.1:18082"]
    # A layout that cannot be placed stops it like any bad config.
    monkeypatch.setenv("LLMKG_ZONE", "us-east-1a")
    assert main(["topology"]) == 2
    assert "scalability.distribution.zone" in capsys.readouterr().err
