"""The public names are few and deliberate (as httpx checks its own)."""

import proxy


def test_all_exports_exist_and_nothing_else_is_public() -> None:
    assert sorted(proxy.__all__) == proxy.__all__
    for name in proxy.__all__:
        assert hasattr(proxy, name), name
    public = {n for n in vars(proxy) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(proxy, n)).__name__ == "module"}
    assert public - modules == set(proxy.__all__)
