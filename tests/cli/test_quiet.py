"""--version, and the libraries' warnings and loading bars hidden unless --verbose."""

from brickwork import __version__
from brickwork.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"brickwork {__version__}"


def test_library_noise_only_with_verbose(tiny_model_dirs, capsys):
    argv = ["generate", "hi", "--model", tiny_model_dirs["llama"], "--configure", "none"]
    argv += ["--max-new-tokens", "2"]
    assert main(argv) == 0
    quiet = capsys.readouterr().err
    assert main(["--verbose", *argv]) == 0
    verbose = capsys.readouterr().err
    assert "Loading weights" in verbose  # transformers' bar, shown on request
    assert quiet == ""  # no FutureWarning, deprecation note, load report or bar


def test_long_instruction_says_it_is_cut(tiny_model_dirs, capsys):
    from brickwork.configure.prompted import MAX_PROMPT_TOKENS

    long = "word " * MAX_PROMPT_TOKENS  # one token per byte: far past the window
    argv = ["generate", long, "--model", tiny_model_dirs["llama"], "--configure", "none"]
    assert main([*argv, "--max-new-tokens", "1"]) == 0
    assert f"only its last {MAX_PROMPT_TOKENS} are used" in capsys.readouterr().err
