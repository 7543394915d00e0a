#include "vpn/cstp/auth_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlsave.h>

#include <memory>

namespace steward::vpn::cstp {
namespace {

struct DocFree {
  void operator()(xmlDoc* doc) const { xmlFreeDoc(doc); }
};
using Doc = std::unique_ptr<xmlDoc, DocFree>;
struct TextFree {
  void operator()(xmlChar* text) const { xmlFree(text); }
};

bool named(const xmlNode* node, const char* name) {
  return node->type == XML_ELEMENT_NODE && xmlStrcmp(node->name, BAD_CAST name) == 0;
}

std::string attribute(const xmlNode* node, const char* name) {
  std::unique_ptr<xmlChar, TextFree> value(xmlGetProp(node, BAD_CAST name));
  return value ? std::string(reinterpret_cast<const char*>(value.get())) : std::string();
}

std::string text_of(const xmlNode* node) {
  std::unique_ptr<xmlChar, TextFree> value(xmlNodeGetContent(node));
  return value ? std::string(reinterpret_cast<const char*>(value.get())) : std::string();
}

const xmlNode* child(const xmlNode* node, const char* name) {
  for (const xmlNode* it = node->children; it != nullptr; it = it->next) {
    if (named(it, name)) return it;
  }
  return nullptr;
}

std::string serialize(xmlNode* node) {
  xmlBuffer* buffer = xmlBufferCreate();
  if (buffer == nullptr) return {};
  xmlNodeDump(buffer, node->doc, node, 0, 0);
  std::string out(reinterpret_cast<const char*>(xmlBufferContent(buffer)),
                  static_cast<size_t>(xmlBufferLength(buffer)));
  xmlBufferFree(buffer);
  return out;
}

FormField parse_field(const xmlNode* input) {
  FormField field{attribute(input, "type"),
                  attribute(input, "name"),
                  attribute(input, "label"),
                  attribute(input, "value"),
                  {}};
  if (named(input, "select")) {
    field.type = "select";
    for (const xmlNode* option = input->children; option != nullptr; option = option->next) {
      if (!named(option, "option")) continue;
      auto value = attribute(option, "value");
      field.options.push_back(value.empty() ? text_of(option) : value);
    }
    if (field.value.empty() && !field.options.empty()) field.value = field.options.front();
  }
  return field;
}

Result<AuthForm> parse_form(const xmlNode* auth) {
  AuthForm form;
  form.auth_id = attribute(auth, "id");
  if (auto message = child(auth, "message")) form.message = text_of(message);
  if (auto error = child(auth, "error")) form.error = text_of(error);
  const xmlNode* node = child(auth, "form");
  if (node == nullptr) {
    return Error::make(ErrorCode::kInternal, "gateway's auth-request has no <form>");
  }
  form.action = attribute(node, "action");
  form.method = attribute(node, "method");
  for (const xmlNode* input = node->children; input != nullptr; input = input->next) {
    if (!named(input, "input") && !named(input, "select")) continue;
    auto field = parse_field(input);
    if (field.name.empty()) {
      return Error::make(ErrorCode::kInternal, "gateway's login form has an input without name");
    }
    form.fields.push_back(std::move(field));
  }
  return form;
}

void xml_escape_into(std::string& out, std::string_view text) {
  for (char c : text) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
}

std::string escape(std::string_view text) {
  std::string out;
  xml_escape_into(out, text);
  return out;
}

// A valid XML element name: the form's field names become element names of the reply.
bool is_xml_name(std::string_view name) {
  if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_')) {
    return false;
  }
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

}  // namespace

Result<AuthResponse> parse_auth_response(std::string_view xml) {
  // No network access, no entity expansion, no DTD loading: the document comes from the peer.
  int options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;
  Doc doc(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "auth.xml", nullptr, options));
  if (!doc) return Error::make(ErrorCode::kInternal, "gateway's login reply is not XML");
  const xmlNode* root = xmlDocGetRootElement(doc.get());
  if (root == nullptr || !named(root, "config-auth")) {
    return Error::make(ErrorCode::kInternal, "gateway's login reply is not a config-auth document");
  }

  AuthResponse response;
  auto type = attribute(root, "type");
  if (auto opaque = child(root, "opaque"))
    response.opaque = serialize(const_cast<xmlNode*>(opaque));
  const xmlNode* auth = child(root, "auth");
  if (auth != nullptr) {
    if (auto message = child(auth, "message")) response.message = text_of(message);
    if (auto banner = child(auth, "banner"); banner && response.message.empty()) {
      response.message = text_of(banner);
    }
    if (auto error = child(auth, "error")) response.error = text_of(error);
  }
  if (auto error = child(root, "error"); error && response.error.empty()) {
    response.error = text_of(error);
  }

  if (type == "complete") {
    response.kind = AuthResponse::Kind::kComplete;
    if (auto token = child(root, "session-token")) response.session_token = text_of(token);
    return response;
  }
  if (type == "auth-request") {
    if (auth == nullptr) {
      return Error::make(ErrorCode::kInternal, "gateway's auth-request has no <auth> element");
    }
    auto form = parse_form(auth);
    if (!form) {
      // A request with an error and no form is the gateway refusing the login.
      if (!response.error.empty()) {
        response.kind = AuthResponse::Kind::kError;
        return response;
      }
      return form.error();
    }
    response.kind = AuthResponse::Kind::kForm;
    response.form = std::move(*form);
    response.error = response.form.error.empty() ? response.error : response.form.error;
    return response;
  }
  if (!response.error.empty()) {
    response.kind = AuthResponse::Kind::kError;
    return response;
  }
  return Error::make(ErrorCode::kInternal, "gateway's config-auth document has type '{}'",
                     type.substr(0, 40));
}

std::string make_init_request(std::string_view version, std::string_view group_access_url) {
  return fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<config-auth client=\"vpn\" type=\"init\" aggregate-auth-version=\"2\">"
      "<version who=\"vpn\">{}</version><device-id>linux-64</device-id>"
      "<group-access>{}</group-access></config-auth>\n",
      escape(version), escape(group_access_url));
}

Result<std::string> make_form_reply(const AuthResponse& response, const FormAnswers& answers) {
  std::string fields;
  for (const auto& field : response.form.fields) {
    if (!is_xml_name(field.name)) {
      return Error::make(ErrorCode::kInternal, "gateway's login form field '{}' is not a name",
                         field.name.substr(0, 40));
    }
    std::string value;
    if (field.type == "hidden") {
      value = field.value;
    } else if (field.type == "password") {
      value = answers.password;
    } else if (field.type == "select") {
      value = answers.group.empty() ? field.value : answers.group;
    } else if (field.type == "text" && field.name == "username") {
      value = answers.username;
    } else {
      return Error::make(ErrorCode::kInvalidArgument,
                         "gateway asks for '{}' ({}), which Steward's credentials cannot fill",
                         field.name, field.label.empty() ? field.type : field.label);
    }
    fields += fmt::format("<{0}>{1}</{0}>", field.name, escape(value));
  }
  return fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<config-auth client=\"vpn\" type=\"auth-reply\" aggregate-auth-version=\"2\">"
      "<version who=\"vpn\">v9.01</version><device-id>linux-64</device-id>{}"
      "<auth>{}</auth></config-auth>\n",
      response.opaque, fields);
}

}  // namespace steward::vpn::cstp
