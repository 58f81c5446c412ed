"""The four classes, in the competition's index order, and folder-name spellings."""

import re

#: Competition order: covid = 0, lung_opacity = 1, pneumonia = 2, normal = 3.
#: Folder names are mapped onto these by meaning, never by sorting.
CLASS_NAMES: tuple[str, ...] = ("covid", "lung_opacity", "pneumonia", "normal")

_ALIASES = {
    "covid": 0,
    "covid19": 0,
    "covid-19": 0,
    "lungopacity": 1,
    "opacity": 1,
    "pneumonia": 2,
    "viralpneumonia": 2,
    "normal": 3,
}


def class_index(folder_name: str) -> int | None:
    """Competition index of a class folder, whatever its spelling; None if unknown.

    ``COVID``, ``covid``, ``COVID-19``, ``Lung_Opacity``, ``lung opacity``,
    ``Viral Pneumonia``, ``pneumonia``, ``Normal`` and ``normal`` all map.
    """
    key = folder_name.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    return _ALIASES.get(re.sub(r"[\s_\-]+", "", key))
