// Package repocheck holds the tests that look at the repository as a whole
// rather than at one package: today, that every package says in a doc
// comment what it is for (TestPackageDocs). It has no code of its own.
package repocheck
