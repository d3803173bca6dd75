"""MJCF models of the custom MT30 tasks, derived at run time from the XMLs dm_control ships.

Each public function returns `(xml_string, assets)` for `Physics.from_xml_string`. The edits
made here are the only differences from the stock models (official tdmpc2/envs/tasks/*.xml). Hopper,
pendulum and ball_in_cup use their stock XMLs unchanged, so they have no function here.
"""
from __future__ import annotations

from dm_control.suite import common
from lxml import etree

# The 3-link reacher: two upper-arm links of 0.09 replace the stock 0.12 link, and the finger
# sits 0.09 along the hand (not 0.12), so the reach is 3 * 0.09 = 0.27 (stock: 0.24).
_LINK = 0.09
_LIMITED_RANGE = "-80 80"  # degrees; shoulder1 and wrist (the stock wrist allows +-160)


def _parse(filename: str) -> etree._Element:
    return etree.fromstring(common.read_model(filename))


def _serialize(root: etree._Element) -> tuple[str, dict[str, bytes]]:
    return etree.tostring(root, encoding="unicode"), common.ASSETS


def _named(root: etree._Element, tag: str, name: str) -> etree._Element:
    """The unique `<tag name="name">` element below `root`."""
    (element,) = root.xpath(f".//{tag}[@name='{name}']")
    return element


def walker_model() -> tuple[str, dict[str, bytes]]:
    """Stock walker.xml with a floor twice as long (the plane's centre stays at x = 248)."""
    root = _parse("walker.xml")
    _named(root, "geom", "floor").set("size", "500 .8 .2")
    return _serialize(root)


def cheetah_model() -> tuple[str, dict[str, bytes]]:
    """Stock cheetah.xml with a ground twice as long (the plane's centre stays at x = 98)."""
    root = _parse("cheetah.xml")
    _named(root, "geom", "ground").set("size", "200 .8 .5")
    return _serialize(root)


def reacher_three_links_model() -> tuple[str, dict[str, bytes]]:
    """Stock reacher.xml with its arm chain rewritten to three links.

    Stock chain: arm (capsule 0.12, hinge `shoulder`) -> hand at .12 (capsule 0.1, `wrist`
    +-160 deg) -> finger at .12. New chain: arm0 (capsule 0.09, unlimited `shoulder0`) -> arm1 at
    .09 (capsule 0.09, `shoulder1` +-80 deg) -> hand at .09 (capsule 0.1, `wrist` +-80 deg) ->
    finger at .09. Motors: shoulder0, shoulder1, wrist. Options, arena and target are stock.
    """
    root = _parse("reacher.xml")
    arm, hand = _named(root, "body", "arm"), _named(root, "body", "hand")

    arm.set("name", "arm0")
    arm_geom = _named(arm, "geom", "arm")
    arm_geom.set("name", "arm0")
    arm_geom.set("fromto", f"0 0 0 {_LINK} 0 0")
    _named(arm, "joint", "shoulder").set("name", "shoulder0")

    # arm1 is a copy of the new arm0 link with a limited joint; it takes the hand as its child.
    arm1 = etree.SubElement(arm, "body", name="arm1", pos=f"{_LINK} 0 0")
    etree.SubElement(arm1, "geom", {**arm_geom.attrib, "name": "arm1"})
    etree.SubElement(arm1, "joint", name="shoulder1", limited="true", range=_LIMITED_RANGE)
    arm.remove(hand)
    arm1.append(hand)

    hand.set("pos", f"{_LINK} 0 0")
    _named(hand, "joint", "wrist").set("range", _LIMITED_RANGE)
    _named(hand, "body", "finger").set("pos", f"{_LINK} 0 0")

    shoulder_motor = _named(root, "motor", "shoulder")
    shoulder_motor.set("name", "shoulder0")
    shoulder_motor.set("joint", "shoulder0")
    shoulder_motor.addnext(etree.Element("motor", name="shoulder1", joint="shoulder1"))
    return _serialize(root)
