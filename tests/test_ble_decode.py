"""BLE decoders: spec vectors, the encrypted BTHome round trip, fuzzing, profile and config keys."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble import atc, beacon, bthome, ess, ruuvi
from drivers.ble.advert import Advert, normalise_mac, uuid16
from drivers.ble.decoder import BTHomeDecoder
from gateway.config import loader as config
from gateway.config.profiles import BUILTIN_DIR, ProfileLibrary
from gateway.errors import ConfigError, DecodeError
from gateway.model import Observation

KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")  # bthome.io encryption example key
MAC = "54:48:E6:8F:80:A5"
SPEC_ENCRYPTED = bytes.fromhex("41a47266c95f730011223378237214")


def _bthome(payload: bytes, address: str = MAC) -> Advert:
    return Advert(address, -60, service={uuid16(bthome.UUID): payload})


def _values(observations: list[Observation]) -> dict[str, object]:
    return {o.quantity: o.value for o in observations}


def test_all_ble_profiles_load_without_problems() -> None:
    problems: list = []
    profiles = ProfileLibrary([BUILTIN_DIR]).all(problems)
    assert problems == []
    ble = {p.name for p in profiles if p.path.parent.name == "ble"}
    assert {"bthome", "ruuvi-df5", "atc-thermometer", "ess", "ibeacon-tag"} <= ble
    # every BLE profile carries vectors, including refusals
    for p in profiles:
        if p.path.parent.name == "ble":
            assert p.examples, p.name


def test_field_md_bthome_example() -> None:
    decoded = bthome.decode(_bthome(bytes.fromhex("4002CA0903BF13")), {}, {})
    assert decoded.observations == [
        Observation("temperature", 25.06, "degC"),
        Observation("humidity", 50.55, "%"),
    ]
    assert decoded.key is None and decoded.trigger is False


def test_spec_encryption_vector_is_what_aesccm_produces() -> None:
    # Build the spec example independently of drivers.ble: nonce = MAC + d2 fc + info + counter
    counter = bytes.fromhex("00112233")
    nonce = bytes.fromhex(MAC.replace(":", "")) + b"\xd2\xfc" + b"\x41" + counter
    sealed = AESCCM(KEY, tag_length=4).encrypt(nonce, bytes.fromhex("02CA0903BF13"), None)
    built = b"\x41" + sealed[:-4] + counter + sealed[-4:]
    assert built == SPEC_ENCRYPTED
    assert bthome.encrypt(bytes.fromhex("02CA0903BF13"), KEY, MAC, 0x33221100) == built


def test_encrypted_decrypts_with_the_key_and_keys_on_the_counter() -> None:
    decoded = bthome.decode(_bthome(SPEC_ENCRYPTED), {"bindkey": KEY.hex()}, {})
    assert _values(decoded.observations) == {"temperature": 25.06, "humidity": 50.55}
    assert decoded.key == ("c", 0x33221100)
    with_packet = bthome.encrypt(bytes.fromhex("0009 0264 00".replace(" ", "")), KEY, MAC, 7)
    decoded = bthome.decode(_bthome(with_packet), {"bindkey": KEY.hex()}, {})
    assert decoded.key == ("p", 9)
    assert _values(decoded.observations) == {"temperature": 1.0}


@pytest.mark.parametrize(
    ("params", "address", "message"),
    [
        ({"bindkey": "00" * 16}, MAC, "wrong bindkey"),
        ({"bindkey": KEY.hex()}, "54:48:E6:8F:80:A6", "wrong bindkey"),
        ({}, MAC, "no bindkey is configured"),
        ({"bindkey": "abc"}, MAC, "bindkey must be 32 hex digits"),
        ({"bindkey": "zz" * 16}, MAC, "bindkey must be 32 hex digits"),
    ],
)
def test_encrypted_refusals(params: dict, address: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        bthome.decode(_bthome(SPEC_ENCRYPTED, address), params, {})


def test_tampered_ciphertext_is_refused() -> None:
    tampered = bytearray(SPEC_ENCRYPTED)
    tampered[2] ^= 0x01
    with pytest.raises(DecodeError, match="wrong bindkey"):
        bthome.decode(_bthome(bytes(tampered)), {"bindkey": KEY.hex()}, {})


def test_bthome_trigger_events_and_renames() -> None:
    decoded = bthome.decode(_bthome(bytes.fromhex("440012 3A04 3C0203".replace(" ", ""))), {}, {})
    assert decoded.trigger is True and decoded.key == ("p", 0x12)
    assert _values(decoded.observations) == {"button": "long_press", "dimmer": "rotate_right:3"}
    # "no event" slots report nothing
    assert bthome.decode(_bthome(bytes.fromhex("443A00")), {}, {}).observations == []
    renamed = bthome.decode(_bthome(bytes.fromhex("4045EA00")), {}, {0x45: "water_temperature"})
    assert renamed.observations == [Observation("water_temperature", 23.4, "degC")]


def test_bthome_every_table_entry_decodes_at_its_size() -> None:
    for oid, spec in bthome.OBJECTS.items():
        body = bytes([oid]) + (
            bytes([2, 0x41, 0x42]) if spec.kind == "text" else b"\x01" * spec.size
        )
        decoded = bthome.decode(_bthome(b"\x40" + body), {}, {})
        if spec.kind == "skip":
            assert decoded.observations == []
        else:
            assert len(decoded.observations) == 1, hex(oid)
        with pytest.raises(DecodeError):
            bthome.decode(_bthome(b"\x40" + body[:-1]), {}, {})


def test_ruuvi_spec_valid_vector_and_key() -> None:
    data = bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
    decoded = ruuvi.decode(Advert(MAC, manufacturer={0x0499: data}))
    values = _values(decoded.observations)
    assert values["temperature"] == 24.3 and values["pressure"] == 1000.44
    assert values["voltage"] == 2.977 and values["tx_power"] == 4
    assert decoded.key == ("s", 205)
    na = bytes.fromhex("058000FFFFFFFF800080008000FFFFFFFFFFFFFFFFFFFFFF")
    decoded = ruuvi.decode(Advert(MAC, manufacturer={0x0499: na}))
    assert decoded.observations == [] and decoded.key is None


def test_atc_and_pvvx_told_apart_by_length() -> None:
    a = atc.decode(
        Advert(MAC, service={uuid16(0x181A): bytes.fromhex("A4C138AABBCC00EA2D570B8612")})
    )
    p = atc.decode(
        Advert(MAC, service={uuid16(0x181A): bytes.fromhex("CCBBAA38C1A42909D711860B571205")})
    )
    assert _values(a.observations)["temperature"] == 23.4
    assert _values(p.observations)["temperature"] == 23.45
    assert a.key == ("c", 0x12) and p.key == ("c", 0x12)


def test_ess_values_and_unknown_marker() -> None:
    assert ess.decode_value(0x2A6E, struct.pack("<h", -1234)) == Observation(
        "temperature", -12.34, "degC"
    )
    assert ess.decode_value(0x2A6F, b"\xff\xff") is None
    assert ess.decode_value(0x2A71, struct.pack("<H", 27000)) == Observation(
        "wind_direction", 270.0, "deg"
    )
    with pytest.raises(DecodeError, match="0x2A00"):
        ess.decode_value(0x2A00, b"\x00")


def test_beacon_identities() -> None:
    ib = bytes.fromhex("0215e2c56db5dffb48d2b060d0f5a71096e00001002ac5")
    found = beacon.identity(Advert(MAC, manufacturer={0x004C: ib}))
    assert found == (
        "ibeacon",
        {"uuid": "e2c56db5dffb48d2b060d0f5a71096e0", "major": 1, "minor": 42},
        -59,
    )
    decoded = beacon.decode(Advert(MAC, -70, manufacturer={0x004C: ib}), {"major": 1})
    assert _values(decoded.observations) == {"presence": True, "rssi": -70}
    with pytest.raises(DecodeError, match="major 1 does not match"):
        beacon.decode(Advert(MAC, manufacturer={0x004C: ib}), {"major": 2})


def test_mac_normalisation() -> None:
    assert normalise_mac("a4-c1-38-0b-5e-6d") == "A4:C1:38:0B:5E:6D"
    assert normalise_mac("a4c1380b5e6d") == "A4:C1:38:0B:5E:6D"
    assert normalise_mac("a4:c1:38-0b:5e:6d") is None
    assert normalise_mac("A4:C1:38:0B:5E") is None


# -- fuzzing: only DecodeError may escape ------------------------------------------------------
_library_problems: list = []
_PROFILES = [
    p for p in ProfileLibrary([BUILTIN_DIR]).all(_library_problems) if p.path.parent.name == "ble"
]


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(0, len(_PROFILES) - 1),
    text=st.text(max_size=80),
    key=st.one_of(
        st.none(), st.text(max_size=40), st.binary(min_size=16, max_size=16).map(bytes.hex)
    ),
)
def test_fuzz_text_input(index: int, text: str, key: str | None) -> None:
    decoder = _PROFILES[index].decoder
    params = {} if key is None else {"bindkey": key}
    with contextlib.suppress(DecodeError):
        decoder.decode(decoder.parse_input(text), params)


@settings(max_examples=400, deadline=None)
@given(
    index=st.integers(0, len(_PROFILES) - 1),
    head=st.sampled_from([b"", b"\x40", b"\x41", b"\x44", b"\x45", b"\x05", b"\x02\x15", b"\x00"]),
    body=st.binary(max_size=40),
    address=st.sampled_from([MAC, "00:00:00:00:00:00", "not a mac"]),
    encrypted_key=st.booleans(),
)
def test_fuzz_adverts(
    index: int, head: bytes, body: bytes, address: str, encrypted_key: bool
) -> None:
    decoder = _PROFILES[index].decoder
    payload = head + body
    advert = Advert(
        address,
        None,
        manufacturer={0x0499: payload, 0x004C: payload},
        service={uuid16(u): payload for u in (0xFCD2, 0x181A, 0xFEAA, 0x2A6E, 0x2A70, 0x2A19)},
    )
    with contextlib.suppress(DecodeError):
        decoder.decode(advert, {"bindkey": KEY.hex()} if encrypted_key else {})


def test_decoder_refuses_non_advert_input() -> None:
    with pytest.raises(DecodeError, match="expected an advertisement"):
        BTHomeDecoder({}, {}).decode(b"\x40", {})


# -- config keys: exact, path-qualified messages ------------------------------------------------
BASE = """
[gateway]
id = "g1"
[[buses]]
name = "ble0"
transport = "ble"
{bus}
[[buses.devices]]
id = "d1"
profile = "bthome"
{device}
"""


def _problems(
    bus: str = "", device: str = 'address = "A4:C1:38:0B:5E:6D"', profiles=None
) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.parse(BASE.format(bus=bus, device=device), profiles=profiles)
    return [str(p) for p in info.value.problems]


def test_good_config_normalises_the_mac() -> None:
    cfg = config.parse(
        BASE.format(
            bus="",
            device='address = "a4-c1-38-0b-5e-6d"\nbindkey = "231D39C1D7CC1AB1AEE224CD096DB932"',
        )
    )
    device = cfg.buses[0].devices[0]
    assert device.options.address == "A4:C1:38:0B:5E:6D"
    assert device.options.bindkey == KEY.hex()
    assert cfg.buses[0].options.scan_mode == "passive"


@pytest.mark.parametrize(
    ("bus", "device", "message"),
    [
        (
            "",
            'address = "A4:C1:38"',
            'buses[0].devices[0].address: expected a Bluetooth address such as "A4:C1:38:0B:5E:6D", got "A4:C1:38"',  # noqa: E501
        ),
        ("", "", "buses[0].devices[0].address: required key is missing"),
        (
            "",
            'address = "A4:C1:38:0B:5E:6D"\nbindkey = "abcde"',
            "buses[0].devices[0].bindkey: expected 32 hex digits (a 16-byte key), got 5 characters",
        ),
        (
            "",
            'address = "A4:C1:38:0B:5E:6D"\nbindky = "x"',
            'buses[0].devices[0].bindky: unknown key (did you mean "bindkey"?)',
        ),
        (
            "",
            'address = "A4:C1:38:0B:5E:6D"\npresence_timeout = 0',
            "buses[0].devices[0].presence_timeout: expected 1.0..604800.0, got 0",
        ),
        (
            "",
            'address = "A4:C1:38:0B:5E:6D"\ngatt = "notfy"',
            'buses[0].devices[0].gatt: expected one of off, read, notify; got "notfy" (did you mean "notify"?)',  # noqa: E501
        ),
        (
            'scan_mode = "pasive"',
            'address = "A4:C1:38:0B:5E:6D"',
            'buses[0].scan_mode: expected one of passive, active; got "pasive" (did you mean "passive"?)',  # noqa: E501
        ),
        (
            'adapter = "usb0"',
            'address = "A4:C1:38:0B:5E:6D"',
            'buses[0].adapter: expected an adapter name such as "hci0", got "usb0"',
        ),
        (
            "reconnect_min = 10.0\nreconnect_max = 5.0",
            'address = "A4:C1:38:0B:5E:6D"',
            "buses[0].reconnect_max: must be >= reconnect_min (10.0), got 5.0",
        ),
    ],
)
def test_bad_keys_name_their_path(bus: str, device: str, message: str) -> None:
    assert _problems(bus, device) == [message]


def test_replay_bus_keys() -> None:
    text = BASE.replace('transport = "ble"', 'transport = "ble-replay"')
    with pytest.raises(ConfigError) as info:
        config.parse(
            text.format(bus="speed = -1.0", device='address = "A4:C1:38:0B:5E:6D"\ngatt = "read"')
        )
    assert [str(p) for p in info.value.problems] == [
        "buses[0].file: required key is missing",
        "buses[0].speed: expected 0.0..1000000.0, got -1.0",
        'buses[0].devices[0].gatt: a replay bus has no radio to connect with; use gatt = "off"',
    ]


def test_bad_profile_tables_name_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "bad-bthome.toml").write_text(
        '[profile]\nprotocol = "bthome"\n[quantities]\n"0x99" = "x"\n"0x45" = 3\n', encoding="utf-8"
    )
    (tmp_path / "bad-ess.toml").write_text(
        '[profile]\nprotocol = "ess"\n[[point]]\ncharacteristic = "2a00"\nquantty = "t"\n',
        encoding="utf-8",
    )
    problems: list = []
    library = ProfileLibrary([tmp_path])
    library.all(problems)
    where_b, where_e = tmp_path / "bad-bthome.toml", tmp_path / "bad-ess.toml"
    assert sorted(str(p) for p in problems) == sorted(
        [
            f'{where_b}.quantities.0x99: expected a known BTHome object id such as "0x45"',
            f"{where_b}.quantities.0x45: expected a string, got 3",
            f'{where_e}.point[0].characteristic: unknown ESS characteristic "2a00"; known: 2a6e, 2a6f, 2a6d, 2a70, 2a71, 2a19',  # noqa: E501
            f'{where_e}.point[0].quantty: unknown key (did you mean "quantity"?)',
        ]
    )


def test_gatt_without_a_profile_is_a_config_error() -> None:
    """The GATT session takes the ESS decoder as config parsing checked it (no re-check)."""
    text = BASE.format(bus="", device='address = "A4:C1:38:0B:5E:6D"\ngatt = "read"')
    with pytest.raises(ConfigError) as info:
        config.parse(text.replace('profile = "bthome"\n', ""))
    assert [str(p) for p in info.value.problems] == [
        "buses[0].devices[0].gatt: GATT mode reads ESS characteristics; "
        "the device needs an ESS profile"
    ]


def test_gatt_check_uses_the_compiled_profile_of_a_site_profile_dir(tmp_path: Path) -> None:
    """The protocol comes from the compiled decoder, so a profile outside the default search
    path is checked too (the profile file is not read a second time)."""
    (tmp_path / "site-sensor.toml").write_text(
        '[profile]\nname = "site-sensor"\nprotocol = "ruuvi"\n'
    )
    text = BASE.format(bus="", device='address = "A4:C1:38:0B:5E:6D"\ngatt = "notify"')
    with pytest.raises(ConfigError) as info:
        config.parse(
            text.replace('"bthome"', '"site-sensor"'),
            profiles=ProfileLibrary([tmp_path, BUILTIN_DIR]),
        )
    assert [str(p) for p in info.value.problems] == [
        'buses[0].devices[0].gatt: GATT mode reads ESS characteristics; profile "site-sensor" '
        'is protocol "ruuvi", not "ess"'
    ]


def test_gatt_needs_an_ess_profile() -> None:
    problems = _problems("", 'address = "A4:C1:38:0B:5E:6D"\ngatt = "read"')
    assert problems == [
        'buses[0].devices[0].gatt: GATT mode reads ESS characteristics; profile "bthome" is '
        'protocol "bthome", not "ess"'
    ]
    ok = BASE.format(bus="", device='address = "A4:C1:38:0B:5E:6D"\ngatt = "notify"')
    assert (
        config.parse(ok.replace('"bthome"', '"ess-wind"')).buses[0].devices[0].options.gatt
        == "notify"
    )
